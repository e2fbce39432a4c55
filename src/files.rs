//! The files of one repository at one revision, as git stores them (regular files and
//! symbolic links), with each YAML file parsed at most once. The git driver produces them;
//! discovery and manifest read them. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::yaml::{self, YamlError, YamlFile};

/// The files of one repository at one revision, keyed by path relative to the repository
/// root with `/` separators (`apps/web/kustomization.yaml`).
///
/// Symbolic links are kept apart, as git stores them: the link's path and its text, never
/// what the link points to on disk. Reading a path (`get`, `yaml`) follows links that stay
/// inside the repository, as Argo CD does, from the files held here; a link that leads out
/// of the repository is never followed (`escaping_symlink`). Writing through a link is the
/// editor's to refuse (`symlink_of`).
#[derive(Debug, Clone, Default)]
pub struct FileSet {
    /// Regular files only.
    pub files: BTreeMap<String, Arc<[u8]>>,
    /// Every symbolic link (to a file or a directory), path -> link text.
    pub symlinks: BTreeMap<String, String>,
    /// Parsed YAML per path, shared by clones: discovery and 1,000 `find_current` calls over
    /// one repository parse each file once.
    parsed: ParseCache,
}

type Parsed = Result<Arc<YamlFile>, YamlError>;

/// Entries remember the bytes they were parsed from, so a changed `files` map never serves a
/// stale tree.
#[derive(Clone, Default)]
struct ParseCache(Arc<Mutex<HashMap<String, CacheEntry>>>);

/// The bytes a tree was parsed from, and the tree.
type CacheEntry = (Arc<[u8]>, Parsed);

impl fmt::Debug for ParseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "ParseCache({n} files)")
    }
}

impl FileSet {
    /// Records a symbolic link at `path` whose text is `target` (as `readlink` gives it).
    pub fn insert_symlink(&mut self, path: impl Into<String>, target: impl Into<String>) {
        self.symlinks.insert(path.into(), target.into());
    }

    /// The symbolic link that `path` is, or lies under (the outermost one), if any.
    pub fn symlink_of(&self, path: &str) -> Option<&str> {
        if self.symlinks.is_empty() {
            return None;
        }
        let mut end = 0;
        loop {
            let next = path[end..].find('/').map(|i| end + i);
            let prefix = &path[..next.unwrap_or(path.len())];
            if let Some((link, _)) = self.symlinks.get_key_value(prefix) {
                return Some(link);
            }
            match next {
                Some(i) => end = i + 1,
                None => return None,
            }
        }
    }

    /// `path` with every symbolic link on it followed; `Err(link)` names the link that leads
    /// out of the repository (or loops).
    fn follow(&self, path: &str) -> Result<String, String> {
        let mut cur = path.to_string();
        for _ in 0..32 {
            let Some(link) = self.symlink_of(&cur) else { return Ok(cur) };
            let text = &self.symlinks[link];
            let rest = &cur[link.len()..];
            let parent = link.rsplit_once('/').map_or("", |(d, _)| d);
            let target = (!text.starts_with('/'))
                .then(|| normalize_path(&format!("{parent}/{text}")))
                .flatten()
                .ok_or_else(|| link.to_string())?;
            cur = format!("{target}{rest}").trim_start_matches('/').to_string();
        }
        Err(self.symlink_of(path).unwrap_or(path).to_string())
    }

    /// The link on `path` that leads out of the repository, when reading `path` would have
    /// to follow one.
    pub fn escaping_symlink(&self, path: &str) -> Option<String> {
        self.symlink_of(path)?;
        self.follow(path).err()
    }

    /// The content of `path`, following symbolic links inside the repository.
    fn bytes(&self, path: &str) -> Option<&Arc<[u8]>> {
        if let Some(b) = self.files.get(path) {
            return Some(b);
        }
        self.symlink_of(path)?;
        self.files.get(&self.follow(path).ok()?)
    }

    /// Whether `dir` holds a file (the root always exists; an in-repository link to a directory
    /// counts).
    pub fn has_dir(&self, dir: &str) -> bool {
        if dir.is_empty() || self.symlink_of(dir).is_some() {
            return true;
        }
        let prefix = format!("{dir}/");
        self.files.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// Whether `path` exists: a file, a link to a file inside the repository, or a link out
    /// of the repository (which exists, but is not read).
    pub fn contains(&self, path: &str) -> bool {
        self.bytes(path).is_some() || self.escaping_symlink(path).is_some()
    }

    pub fn insert(&mut self, path: impl Into<String>, content: impl Into<Arc<[u8]>>) {
        self.files.insert(path.into(), content.into());
    }

    /// The content of `path`, following symbolic links that stay inside the repository.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.bytes(path).map(|b| &b[..])
    }

    /// Like `get`, sharing the buffer.
    pub fn get_shared(&self, path: &str) -> Option<Arc<[u8]>> {
        self.bytes(path).cloned()
    }

    /// The YAML tree of `path`, parsed at most once; `None` when there is no such file.
    pub fn yaml(&self, path: &str) -> Option<Parsed> {
        let bytes = self.bytes(path)?;
        if let Ok(cache) = self.parsed.0.lock()
            && let Some((src, parsed)) = cache.get(path)
            && Arc::ptr_eq(src, bytes)
        {
            return Some(parsed.clone());
        }
        let parsed: Parsed = yaml::parse_bytes(bytes).map(Arc::new);
        if let Ok(mut cache) = self.parsed.0.lock() {
            cache.insert(path.to_string(), (bytes.clone(), parsed.clone()));
        }
        Some(parsed)
    }
}

/// Resolves `.` and `..` and drops empty segments; `None` when the path leaves the root.
pub fn normalize_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize_path("./a//b/../c/").as_deref(), Some("a/c"));
        assert_eq!(normalize_path("").as_deref(), Some(""));
        assert_eq!(normalize_path("a/../.."), None);
    }

    #[test]
    fn parse_cache_follows_file_changes() {
        let mut fs = FileSet::default();
        fs.insert("a.yaml", "a: 1\n".as_bytes());
        let first = fs.yaml("a.yaml").unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &fs.yaml("a.yaml").unwrap().unwrap()));
        fs.insert("a.yaml", "a: [\n".as_bytes());
        assert!(fs.yaml("a.yaml").unwrap().is_err());
    }
}
