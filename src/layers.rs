//! The architecture, checked: which modules may use what (docs/architecture.md). The pure core
//! decides without I/O and knows neither the ports nor the drivers, the engine joins the drivers
//! only through the ports, the ports name no driver. A test, so that a `use` that breaks a layer fails `scripts/test.sh`.

use std::path::{Path, PathBuf};

/// Modules that decide: no I/O, no runtime, no vendor client, no driver, no engine.
const PURE: &[&str] = &[
    "annotations.rs",
    "commands/",
    "discovery/mod.rs",
    "domain.rs",
    "error.rs",
    "files.rs",
    "image_updater.rs",
    "image_updater/",
    "manifest/",
    "metadata.rs",
    "planner/",
    "strategy/",
    "templates.rs",
    "yaml.rs",
];

/// What the pure modules must not name.
const NOT_IN_PURE: &[&str] = &[
    "tokio::",
    "reqwest::",
    "octocrab::",
    "git2::",
    "axum::",
    "hyper::",
    "kube::",
    "tempfile::",
    "std::fs",
    "std::process",
    "std::net::Tcp",
    "std::net::Udp",
    "std::env::var",
    "crate::engine",
    "crate::registry",
    "crate::git",
    "crate::forge",
    "crate::server",
    "crate::daemon",
    "crate::drivers",
    "crate::config",
    "crate::output",
    "crate::discovery::locations",
    "crate::ports",
    "crate::cluster",
];

/// The engine reaches the world through the ports only.
const NOT_IN_ENGINE: &[&str] = &[
    "reqwest::",
    "octocrab::",
    "git2::",
    "axum::",
    "kube::",
    "std::fs",
    "std::process",
    "crate::registry",
    "crate::git",
    "crate::forge::github",
    "crate::forge::gitlab",
    "crate::forge::local",
    "crate::server",
    "crate::drivers",
    "crate::discovery::Locations",
    "crate::discovery::locations",
    "crate::cluster",
    // The drivers by name, however they were imported.
    "Locations",
    "GitDriver",
    "RegistryDriver",
    "RegistryClient",
    "GithubForge",
    "LocalForge",
    "GitlabForge",
    "KubeCluster",
];

/// The ports describe the world in the bot's words: no vendor type, no driver.
const NOT_IN_PORTS: &[&str] = &[
    "tokio::",
    "reqwest::",
    "octocrab::",
    "git2::",
    "axum::",
    "kube::",
    "std::fs",
    "crate::engine",
    "crate::registry",
    "crate::git",
    "crate::forge",
    "crate::server",
    "crate::daemon",
    "crate::drivers",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test-only files: what tests use is not what the module uses.
fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "golden.rs" || name == "layers.rs"
}

/// The code of a file as its layer sees it: comments dropped, an inline `mod tests { ... }` cut
/// off, and every `use` tree spelled out path by path (`use std::{fs, process}` adds `std::fs`
/// and `std::process`; `use crate::forge::{x, github::Y}` adds `crate::forge::github::Y`).
fn code_of(text: &str) -> String {
    let mut lines = Vec::new();
    let mut all = text.lines().peekable();
    while let Some(line) = all.next() {
        if line.trim() == "#[cfg(test)]" && all.peek().is_some_and(|next| next.trim_start().starts_with("mod tests {")) {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        lines.push(code.to_string());
    }
    let code = lines.join("\n");
    let mut out = code.clone();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let tree = &rest[i + 4..];
        let Some(end) = tree.find(';') else { break };
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            for path in expand("", &tree[..end]) {
                out.push('\n');
                out.push_str(&path);
            }
        }
        rest = &tree[end..];
    }
    out
}

/// The paths a `use` tree names: `a::{b, c::{d, self}}` is `a::b`, `a::c::d`, `a::c`.
fn expand(prefix: &str, tree: &str) -> Vec<String> {
    // `x as y` names `x`: drop the renames, then the layout.
    let mut renamed = tree.to_string();
    while let Some(i) = renamed.find(" as ") {
        let rest = &renamed[i + 4..];
        let name = rest.trim_start();
        let end = (rest.len() - name.len()) + name.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(name.len());
        renamed.replace_range(i..i + 4 + end, "");
    }
    let tree: String = renamed.split_whitespace().collect();
    let join = |p: &str, t: &str| if p.is_empty() { t.to_string() } else if t == "self" { p.to_string() } else { format!("{p}::{t}") };
    match tree.find('{') {
        Some(open) if tree.ends_with('}') => {
            let head = tree[..open].trim_end_matches("::");
            let base = join(prefix, head);
            split_top_level(&tree[open + 1..tree.len() - 1]).iter().flat_map(|item| expand(&base, item)).collect()
        }
        _ => vec![join(prefix, &tree)],
    }
}
fn split_top_level(group: &str) -> Vec<String> {
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items.into_iter().filter(|i| !i.trim().is_empty()).collect()
}

/// Every (file, forbidden name) pair in the files of `layer` (paths relative to `src/`).
fn violations(layer: &[&str], forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/");
        if is_test_file(&rel) || !layer.iter().any(|l| if l.ends_with('/') { rel.starts_with(l) } else { rel == *l }) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for name in forbidden {
            let hit = code.match_indices(name).any(|(i, _)| {
                // `crate::git` must not match `crate::github_x`, nor `git2::` `digit2::`.
                let before = code[..i].chars().last();
                let after = code[i + name.len()..].chars().next();
                let starts_word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
                let ends_word = name.ends_with("::") || !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
                starts_word && ends_word
            });
            if hit {
                found.push(format!("src/{rel} uses {name}"));
            }
        }
    }
    found
}

#[test]
fn the_pure_modules_do_no_io_and_know_no_driver() {
    let found = violations(PURE, NOT_IN_PURE);
    assert!(found.is_empty(), "the pure core must stay pure (docs/architecture.md):\n{}", found.join("\n"));
}

#[test]
fn the_engine_reaches_the_world_only_through_the_ports() {
    let found = violations(&["engine.rs", "engine/"], NOT_IN_ENGINE);
    assert!(found.is_empty(), "the engine must use the ports, not the drivers:\n{}", found.join("\n"));
}

#[test]
fn the_ports_name_no_driver_and_no_vendor_type() {
    let found = violations(&["ports.rs", "ports/"], NOT_IN_PORTS);
    assert!(found.is_empty(), "the ports must stay in the bot's words:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_every_spelling_of_an_import_and_ignores_comments_and_tests() {
    let code = code_of(
        "use crate::{domain::AppId, git::{self, Snapshot}};\nuse std::{fs, process::Command};\nuse crate::forge::{layered, github::GithubForge as G};\n// uses std::net::TcpStream in a comment\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use std::env::var;\n}\n",
    );
    for path in ["crate::domain::AppId", "crate::git", "crate::git::Snapshot", "std::fs", "std::process::Command", "crate::forge::github::GithubForge"] {
        assert!(code.lines().any(|l| l == path), "{path} not seen in:\n{code}");
    }
    assert!(!code.contains("std::net::Tcp") && !code.contains("std::env::var"), "{code}");
    // And it reports them: each layer's own files are read and a forbidden name found.
    let found = violations(&["engine.rs"], &["crate::ports", "Drivers"]);
    assert!(found.iter().any(|v| v == "src/engine.rs uses crate::ports"), "{found:?}");
    assert!(violations(&["layers.rs"], &["std::fs"]).is_empty(), "this file is a test file, skipped");
}
