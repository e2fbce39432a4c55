//! The architecture, checked: which modules may use what (docs/architecture.md). The pure core
//! decides without I/O, the engine joins the drivers only through the ports, the ports name no
//! driver. A test, so that a `use` that breaks a layer fails `scripts/test.sh`.

use std::path::{Path, PathBuf};

/// Modules that decide: no I/O, no runtime, no vendor client, no driver, no engine.
const PURE: &[&str] = &[
    "annotations.rs",
    "commands/",
    "discovery/mod.rs",
    "domain.rs",
    "error.rs",
    "files.rs",
    "http.rs",
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
/// off, and `use crate::{a, b::c}` groups spelled out as `crate::a` and `crate::b::c`.
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
    while let Some(i) = rest.find("crate::{") {
        let group = &rest[i + "crate::{".len()..];
        let Some(end) = group.find("};") else { break };
        for item in split_top_level(&group[..end]) {
            out.push_str(&format!("\ncrate::{}", item.trim()));
        }
        rest = &group[end..];
    }
    out
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
    items.into_iter().map(|i| i.split_whitespace().collect()).filter(|i: &String| !i.is_empty()).collect()
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
fn the_check_sees_grouped_imports_and_ignores_comments_and_tests() {
    let code = code_of(
        "use crate::{domain::AppId, git::{self, Snapshot}};\n// uses std::fs in a comment\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use std::fs;\n}\n",
    );
    assert!(code.contains("crate::git::{self,Snapshot}"), "{code}");
    assert!(code.contains("crate::domain::AppId"), "{code}");
    assert!(!code.contains("std::fs"), "{code}");
    // And it would catch them: a pure file that used a driver is reported.
    let layer_files = violations(&["engine.rs"], &["crate::ports"]);
    assert!(layer_files.iter().any(|v| v == "src/engine.rs uses crate::ports"), "{layer_files:?}");
}
