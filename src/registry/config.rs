//! argocd-image-updater's `registries.conf` and how an image is mapped to a registry endpoint.
//!
//! Resolution of an image `host[:port]/repository`:
//! 1. the entry whose `prefix` equals the host; else the entry with the longest `prefix` that
//!    starts `host/repository` at a path boundary (AIU matches plain string prefixes, so a prefix
//!    may name a path such as `registry.example.com/team`; we also require the match to end at
//!    `/` or the end so `ghcr.io` does not match `ghcr.io.evil.example`);
//! 2. no entry: `https://<host>`, except `docker.io` → `https://registry-1.docker.io`, and
//!    loopback hosts (`localhost`, `127.x.x.x`, `[::1]`, any port) → `http://<host>`, as Docker
//!    treats loopback registries as insecure by default.
//!
//! `defaultns` is prepended to a repository without `/`. `default: true` marks the registry that
//! image names written without registry host belong to (Docker Hub when no entry has it): its
//! `prefix` (or, when it has none, the host of its `api_url`) becomes the
//! [`DefaultRegistry`] naming context ([`RegistriesConf::default_registry`]) with which image
//! names from annotations and manifests are read, so `team/app` is `<prefix>/team/app` and is
//! then resolved here like any name with that host.
//! `ca_file` (a PEM file) and `ca_data` (PEM text) add CA certificates to trust for the entry's
//! registry, besides the system's. `ping` and `tagsortmode` are accepted and not used.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{DefaultRegistry, DOCKER_HUB, is_loopback, normalize_registry_host};

/// One `registries:` item. Field names and meanings follow AIU's
/// docs/configuration/registries.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct RegistryEntry {
    /// Informational name.
    pub name: String,
    /// Image prefix this entry applies to (a host, optionally with a path). Only the
    /// `default: true` entry may leave it out; it then takes the host of its `api_url`.
    pub prefix: String,
    /// Registry API base URL, scheme included, e.g. `https://registry-1.docker.io`.
    pub api_url: Option<String>,
    /// AIU pings `/v2/` first; this client does not (the first real request tells the same).
    pub ping: bool,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Registry for image names written without registry host.
    pub default: bool,
    /// Namespace for repositories without `/` (`library` on Docker Hub).
    pub defaultns: Option<String>,
    /// Credential reference (`env:`, `ext:`, `pullsecret:`, `secret:`) used when the image has none.
    pub credentials: Option<String>,
    /// Go duration after which `credentials` are fetched again (`2h`, `30m`, `10s`).
    pub credsexpire: Option<String>,
    /// Requests per second to this registry.
    pub limit: Option<u32>,
    /// AIU's tag sort mode for the tag list (`latest-first`, ...); not used.
    pub tagsortmode: Option<String>,
    /// A PEM file of CA certificates to trust for this registry, besides the system's.
    pub ca_file: Option<String>,
    /// The same as PEM text in the file itself.
    pub ca_data: Option<String>,
    /// The PEM of `ca_file` or `ca_data`, read when the file is loaded.
    #[serde(skip)]
    pub ca_pem: Option<Arc<str>>,
}

#[derive(Debug, Default, Deserialize)]
struct RegistriesFile {
    #[serde(default)]
    registries: Vec<RegistryEntry>,
}

/// A loaded and validated `registries.conf`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistriesConf {
    pub entries: Vec<RegistryEntry>,
    /// Where names without registry host belong: the `default: true` entry, else Docker Hub.
    default_registry: DefaultRegistry,
}

/// Where and how to talk to the registry of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Registry host as in the image name (`docker.io`, `localhost:5000`).
    pub host: String,
    /// API base without trailing slash, e.g. `https://registry-1.docker.io`.
    pub api_url: String,
    /// Repository on that registry after `defaultns`.
    pub repository: String,
    pub insecure: bool,
    pub credentials: Option<String>,
    pub credsexpire: Option<Duration>,
    pub limit: Option<u32>,
    /// Extra CA certificates (PEM) to trust for this registry.
    pub ca_pem: Option<Arc<str>>,
}

impl RegistryEntry {
    /// How errors name the entry: by `name`, else by `prefix`.
    fn who(&self) -> String {
        if self.name.is_empty() { format!("prefix {:?}", self.prefix) } else { format!("registry {:?}", self.name) }
    }
}

impl RegistriesConf {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read registries.conf {}: {e}", path.display()))?;
        let mut conf = Self::parse(&text).map_err(|e| format!("registries.conf {}: {e}", path.display()))?;
        for key in unknown_keys(&text) {
            tracing::warn!("registries.conf {}: key {key} is read by nothing (misspelled?); ignored", path.display());
        }
        // `ca_file` paths are read now, so that a missing file is an error at start naming it.
        for e in &mut conf.entries {
            if let Some(file) = e.ca_file.as_deref().filter(|f| !f.trim().is_empty()) {
                let who = e.who();
                let pem = std::fs::read_to_string(file)
                    .map_err(|err| format!("registries.conf {}: {who}: cannot read ca_file {file}: {err}", path.display()))?;
                check_pem(&pem).map_err(|m| format!("registries.conf {}: {who}: ca_file {file}: {m}", path.display()))?;
                e.ca_pem = Some(pem.into());
            }
        }
        Ok(conf)
    }

    /// The `ca_file` paths of the entries.
    pub fn referenced_files(&self) -> Vec<std::path::PathBuf> {
        self.entries.iter().filter_map(|e| e.ca_file.as_deref()).filter(|f| !f.trim().is_empty()).map(Into::into).collect()
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RegistriesFile = if text.trim().is_empty() {
            RegistriesFile::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
        };
        let mut entries = file.registries;
        let mut seen = std::collections::HashSet::new();
        for e in &mut entries {
            let who = e.who();
            if let Some(api) = &e.api_url {
                let ok = url::Url::parse(api).map(|u| matches!(u.scheme(), "http" | "https")).unwrap_or(false);
                if !ok {
                    return Err(format!("{who}: api_url {api:?} is not an http(s) URL"));
                }
            }
            if e.prefix.trim().is_empty() {
                // AIU once took the entry without prefix as the default registry; a default
                // entry may still leave it out and is then found by its API host.
                match e.api_url.as_deref().filter(|_| e.default).and_then(api_host) {
                    Some(host) => e.prefix = host,
                    None => return Err(format!("{who} has no prefix (only the default: true entry may leave it out, when it has an api_url)")),
                }
            }
            if !seen.insert(e.prefix.clone()) {
                return Err(format!("prefix {:?} is configured twice", e.prefix));
            }
            if let Some(exp) = &e.credsexpire {
                parse_go_duration(exp).map_err(|m| format!("{who}: credsexpire {exp:?}: {m}"))?;
            }
            if e.limit == Some(0) {
                return Err(format!("{who}: limit must be at least 1 request per second"));
            }
            let has_file = e.ca_file.as_deref().is_some_and(|f| !f.trim().is_empty());
            if let Some(data) = e.ca_data.as_deref().filter(|d| !d.trim().is_empty()) {
                if has_file {
                    return Err(format!("{who}: give ca_file or ca_data, not both"));
                }
                check_pem(data).map_err(|m| format!("{who}: ca_data: {m}"))?;
                e.ca_pem = Some(data.into());
            }
        }
        if entries.iter().filter(|e| e.default).count() > 1 {
            return Err("more than one registry has default: true".into());
        }
        let mut conf = RegistriesConf { entries, default_registry: DefaultRegistry::default() };
        if let Some(e) = conf.default_entry() {
            let default =
                DefaultRegistry::from_prefix(&e.prefix).map_err(|m| format!("{} (default: true): {m}", e.who()))?;
            conf.default_registry = default;
        }
        Ok(conf)
    }

    /// The `default: true` entry, if any.
    pub fn default_entry(&self) -> Option<&RegistryEntry> {
        self.entries.iter().find(|e| e.default)
    }

    /// The naming context image names written without registry host are read with.
    pub fn default_registry(&self) -> &DefaultRegistry {
        &self.default_registry
    }

    fn entry_for(&self, host: &str, repository: &str) -> Option<&RegistryEntry> {
        if let Some(e) = self.entries.iter().find(|e| trim_prefix(&e.prefix) == host) {
            return Some(e);
        }
        let full = format!("{host}/{repository}");
        self.entries
            .iter()
            .filter(|e| {
                let p = trim_prefix(&e.prefix);
                full.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|e| trim_prefix(&e.prefix).len())
    }

    pub fn resolve(&self, host: &str, repository: &str) -> Endpoint {
        let entry = self.entry_for(host, repository);
        let api_url = match entry.and_then(|e| e.api_url.as_deref()) {
            Some(api) => normalize_api_url(api),
            None if host == DOCKER_HUB => "https://registry-1.docker.io".to_string(),
            None if is_loopback(host) => format!("http://{host}"),
            None => format!("https://{host}"),
        };
        let repository = match entry.and_then(|e| e.defaultns.as_deref()).filter(|ns| !ns.is_empty()) {
            Some(ns) if !repository.contains('/') => format!("{ns}/{repository}"),
            _ => repository.to_string(),
        };
        Endpoint {
            host: host.to_string(),
            api_url,
            repository,
            insecure: entry.is_some_and(|e| e.insecure),
            credentials: entry.and_then(|e| e.credentials.clone()).filter(|c| !c.trim().is_empty()),
            // Validated in `parse`.
            credsexpire: entry.and_then(|e| e.credsexpire.as_deref()).and_then(|d| parse_go_duration(d).ok()),
            limit: entry.and_then(|e| e.limit),
            ca_pem: entry.and_then(|e| e.ca_pem.clone()),
        }
    }
}

fn trim_prefix(p: &str) -> &str {
    p.trim().trim_end_matches('/')
}

/// `host[:port]` of an API URL, Docker Hub's API host as `docker.io` (the name images use).
fn api_host(api: &str) -> Option<String> {
    let url = url::Url::parse(api).ok()?;
    let host = normalize_registry_host(url.host_str()?);
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The keys of a registries.conf text that no field reads: `registries[1].crendentials`.
fn unknown_keys(text: &str) -> Vec<String> {
    const ENTRY: [&str; 13] = [
        "name", "prefix", "api_url", "ping", "insecure", "default", "defaultns", "credentials", "credsexpire", "limit",
        "tagsortmode", "ca_file", "ca_data",
    ];
    let Ok(serde_json::Value::Object(top)) = serde_saphyr::from_str::<serde_json::Value>(text) else { return Vec::new() };
    let mut out: Vec<String> = top.keys().filter(|k| *k != "registries").cloned().collect();
    if let Some(serde_json::Value::Array(entries)) = top.get("registries") {
        for (i, entry) in entries.iter().enumerate() {
            if let serde_json::Value::Object(fields) = entry {
                out.extend(fields.keys().filter(|k| !ENTRY.contains(&k.as_str())).map(|k| format!("registries[{i}].{k}")));
            }
        }
    }
    out
}

/// Whether `pem` holds at least one certificate the TLS library takes.
fn check_pem(pem: &str) -> Result<(), String> {
    match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err("no PEM certificate in it".into()),
        Err(e) => Err(format!("not a PEM certificate bundle: {e}")),
    }
}

/// `https://r.example/v2/` and `https://r.example` name the same API.
fn normalize_api_url(api: &str) -> String {
    let s = api.trim().trim_end_matches('/');
    s.strip_suffix("/v2").unwrap_or(s).to_string()
}

/// Parses a Go `time.Duration` string: `2h`, `30m`, `10s`, `1h30m`, `1.5h`, `500ms`.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().map_err(|_| "expected a number such as 30m, 2h or 10s".to_string())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit (s, m or h)".into()),
            u => return Err(format!("unknown unit {u:?} (use s, m or h)")),
        };
        total += num * factor;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
registries:
- name: Docker Hub
  prefix: docker.io
  api_url: https://registry-1.docker.io
  ping: yes
  credentials: secret:foo/bar#creds
  credsexpire: 2h
  defaultns: library
  default: true
  limit: 10
  tagsortmode: latest-first
- name: Internal
  prefix: registry.example.com
  api_url: https://registry.example.com/v2/
  insecure: yes
  credentials: env:REGISTRY_SECRET
- name: Team
  prefix: registry.example.com/team
  api_url: https://team-mirror.example.com
  ca_file: /app/config/certs/ca.pem
"#;

    #[test]
    fn unknown_keys_are_named() {
        let text = "registries:\n- name: a\n  prefix: a.example\n  crendentials: env:X\n- prefix: b.example\nregistry: []\n";
        assert_eq!(unknown_keys(text), ["registry", "registries[0].crendentials"]);
        assert!(unknown_keys(FULL).is_empty(), "{:?}", unknown_keys(FULL));
    }

    #[test]
    fn ca_data_is_checked_and_ca_file_and_ca_data_exclude_each_other() {
        let bad = "registries:\n- name: r\n  prefix: r.example\n  ca_data: not a certificate\n";
        let err = RegistriesConf::parse(bad).unwrap_err();
        assert!(err.contains("\"r\"") && err.contains("ca_data"), "{err}");
        let both = "registries:\n- name: r\n  prefix: r.example\n  ca_file: /x.pem\n  ca_data: x\n";
        assert!(RegistriesConf::parse(both).unwrap_err().contains("not both"));
    }

    #[test]
    fn parses_every_field() {
        let conf = RegistriesConf::parse(FULL).unwrap();
        assert_eq!(conf.entries.len(), 3);
        let hub = &conf.entries[0];
        assert_eq!(
            hub,
            &RegistryEntry {
                name: "Docker Hub".into(),
                prefix: "docker.io".into(),
                api_url: Some("https://registry-1.docker.io".into()),
                ping: true,
                insecure: false,
                default: true,
                defaultns: Some("library".into()),
                credentials: Some("secret:foo/bar#creds".into()),
                credsexpire: Some("2h".into()),
                limit: Some(10),
                tagsortmode: Some("latest-first".into()),
                ..RegistryEntry::default()
            }
        );
        assert!(conf.entries[1].insecure, "YAML 1.1 `yes` is true, as in AIU's Go YAML");
        assert_eq!(conf.default_entry().unwrap().name, "Docker Hub");
    }

    #[test]
    fn resolves_endpoints() {
        let conf = RegistriesConf::parse(FULL).unwrap();
        let hub = conf.resolve("docker.io", "library/nginx");
        assert_eq!(hub.api_url, "https://registry-1.docker.io");
        assert_eq!(hub.credsexpire, Some(Duration::from_secs(7200)));
        assert_eq!(hub.limit, Some(10));

        let internal = conf.resolve("registry.example.com", "app");
        assert_eq!(internal.api_url, "https://registry.example.com");
        assert!(internal.insecure);
        assert_eq!(internal.credentials.as_deref(), Some("env:REGISTRY_SECRET"));

        // Exact host match wins over a longer path prefix, as in AIU.
        let team = conf.resolve("registry.example.com", "team/app");
        assert_eq!(team.api_url, "https://registry.example.com");

        let none = RegistriesConf::default();
        let cases = [
            ("ghcr.io", "https://ghcr.io"),
            ("docker.io", "https://registry-1.docker.io"),
            ("localhost:5000", "http://localhost:5000"),
            ("localhost", "http://localhost"),
            ("127.0.0.1:41234", "http://127.0.0.1:41234"),
            ("[::1]:5000", "http://[::1]:5000"),
            ("registry.local:5000", "https://registry.local:5000"),
        ];
        for (host, want) in cases {
            assert_eq!(none.resolve(host, "a/b").api_url, want, "case {host}");
        }
    }

    #[test]
    fn path_prefixes_and_defaultns() {
        let conf = RegistriesConf::parse(
            "registries:\n- name: Team\n  prefix: r.example/team\n  api_url: http://mirror:5000\n  defaultns: base\n- name: R\n  prefix: r.example.org\n",
        )
        .unwrap();
        assert_eq!(conf.resolve("r.example", "team/app").api_url, "http://mirror:5000");
        assert_eq!(conf.resolve("r.example", "teamx/app").api_url, "https://r.example");
        assert_eq!(conf.resolve("r.example.org", "app").api_url, "https://r.example.org");
        let m = conf.resolve("r.example", "team");
        assert_eq!(m.repository, "base/team");
    }

    #[test]
    fn the_default_entry_becomes_the_naming_context() {
        use crate::domain::{DefaultRegistry, ImageName};
        let name = |conf: &RegistriesConf, written: &str| ImageName::parse_with(written, conf.default_registry()).unwrap();

        // (case, registries.conf, written name, normalized name, API URL, repository on the API)
        let cases = [
            ("no file: Docker Hub", "", "nginx", "docker.io/library/nginx", "https://registry-1.docker.io", "library/nginx"),
            (
                "docker.io default: as without it",
                "registries:\n- {name: Hub, prefix: docker.io, defaultns: library, default: true}\n",
                "argoproj/argocd",
                "docker.io/argoproj/argocd",
                "https://registry-1.docker.io",
                "argoproj/argocd",
            ),
            (
                "quay default",
                "registries:\n- {name: Quay, prefix: quay.io, api_url: 'https://quay.io', default: true}\n",
                "argoproj/argocd",
                "quay.io/argoproj/argocd",
                "https://quay.io",
                "argoproj/argocd",
            ),
            (
                "single component takes defaultns, not library/",
                "registries:\n- {name: Internal, prefix: registry.example, api_url: 'http://127.0.0.1:5000', defaultns: base, default: true}\n",
                "tool",
                "registry.example/tool",
                "http://127.0.0.1:5000",
                "base/tool",
            ),
            (
                "explicit docker.io stays on Docker Hub",
                "registries:\n- {name: Quay, prefix: quay.io, api_url: 'https://quay.io', default: true}\n",
                "docker.io/argoproj/argocd",
                "docker.io/argoproj/argocd",
                "https://registry-1.docker.io",
                "argoproj/argocd",
            ),
            (
                "explicit docker.io entry is not the default",
                "registries:\n- {name: Internal, prefix: registry.example, api_url: 'http://127.0.0.1:5000', default: true}\n- {name: Hub, prefix: docker.io, api_url: 'http://127.0.0.1:6000'}\n",
                "docker.io/team/app",
                "docker.io/team/app",
                "http://127.0.0.1:6000",
                "team/app",
            ),
            (
                "path prefix",
                "registries:\n- {name: Team, prefix: registry.example.com/team, api_url: 'http://mirror:5000', default: true}\n",
                "app",
                "registry.example.com/team/app",
                "http://mirror:5000",
                "team/app",
            ),
            (
                "no prefix: the api_url host",
                "registries:\n- {name: Local, api_url: 'http://127.0.0.1:5000/v2/', default: true, insecure: true}\n",
                "team/app",
                "127.0.0.1:5000/team/app",
                "http://127.0.0.1:5000",
                "team/app",
            ),
            (
                "no prefix, Docker Hub's API host is docker.io",
                "registries:\n- {name: Hub, api_url: 'https://registry-1.docker.io', defaultns: library, default: true, limit: 5}\n",
                "nginx",
                "docker.io/library/nginx",
                "https://registry-1.docker.io",
                "library/nginx",
            ),
        ];
        for (case, text, written, want, api_url, repository) in cases {
            let conf = RegistriesConf::parse(text).unwrap_or_else(|e| panic!("case {case}: {e}"));
            let n = name(&conf, written);
            assert_eq!(n.to_string(), want, "case {case}: name");
            let endpoint = conf.resolve(&n.registry, &n.repository);
            assert_eq!(endpoint.api_url, api_url, "case {case}: api_url");
            assert_eq!(endpoint.repository, repository, "case {case}: repository");
        }

        let conf = RegistriesConf::parse("registries:\n- {name: Quay, prefix: quay.io, default: true}\n").unwrap();
        assert_eq!(conf.default_entry().map(|e| e.name.as_str()), Some("Quay"), "case default entry found");
        assert_eq!(conf.default_registry(), &DefaultRegistry::from_prefix("quay.io").unwrap(), "case naming context");
        let conf = RegistriesConf::parse("registries:\n- {name: Local, api_url: 'http://127.0.0.1:5000', default: true, insecure: true}\n").unwrap();
        let local = conf.resolve("127.0.0.1:5000", "team/app");
        assert!(local.insecure, "case prefix-less default entry found by its API host");
        let conf = RegistriesConf::parse("registries:\n- {name: Hub, api_url: 'https://registry-1.docker.io', default: true, limit: 5}\n").unwrap();
        assert_eq!(conf.resolve("docker.io", "library/nginx").limit, Some(5), "case Docker Hub API host matches docker.io images");
        assert_eq!(RegistriesConf::parse(FULL).unwrap().default_registry(), &DefaultRegistry::default(), "case FULL: Docker Hub");
    }

    #[test]
    fn rejects_bad_files_naming_the_problem() {
        let cases = [
            ("registries: [\n  - name: x\n", "invalid YAML"),
            ("registries:\n- name: x\n", "has no prefix"),
            ("registries:\n- {name: a, prefix: p}\n- {name: b, prefix: p}\n", "configured twice"),
            ("registries:\n- {name: a, prefix: p, default: true}\n- {name: b, prefix: q, default: true}\n", "more than one"),
            ("registries:\n- {name: a, prefix: myregistry, default: true}\n", "registry \"a\" (default: true): prefix \"myregistry\" does not start with a registry host"),
            ("registries:\n- {name: a, api_url: 'https://r.example'}\n", "has no prefix"),
            ("registries:\n- {name: a, default: true}\n", "has no prefix"),
            ("registries:\n- {name: a, api_url: 'https://r.example', default: true}\n- {name: b, prefix: r.example}\n", "configured twice"),
            ("registries:\n- {name: a, prefix: p, api_url: 'ftp://x'}\n", "not an http(s) URL"),
            ("registries:\n- {name: a, prefix: p, credsexpire: 5 hours}\n", "credsexpire"),
            ("registries:\n- {name: a, prefix: p, limit: 0}\n", "limit"),
        ];
        for (text, want) in cases {
            let err = RegistriesConf::parse(text).unwrap_err();
            assert!(err.contains(want), "case {want}: got {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.conf");
        std::fs::write(&path, "registries: {{{").unwrap();
        let err = RegistriesConf::load(&path).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(RegistriesConf::parse("").unwrap().entries.is_empty());
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("2h", Some(7200.0)),
            ("30m", Some(1800.0)),
            ("10s", Some(10.0)),
            ("1h30m", Some(5400.0)),
            ("1.5h", Some(5400.0)),
            ("500ms", Some(0.5)),
            ("0", Some(0.0)),
            ("10", None),
            ("", None),
            ("5d", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).ok().map(|d| d.as_secs_f64()), want, "case {s:?}");
        }
    }
}
