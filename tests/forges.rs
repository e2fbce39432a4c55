//! One run across forges (config `forges:`): an Application on the fake GitHub and one on the fake
//! GitLab, each repository sent to the forge of its git host. The two fakes listen on loopback;
//! the GitHub one is named `127.0.0.1`, the GitLab one `localhost`, so that they are two hosts.

mod support;

use support::cli::{Plan, PlanOutput};
use support::fake_github::{self, FakeGithub, Role};
use support::fake_gitlab::{self, Access, FakeGitlab};
use support::gitops::{App, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const REPO: &str = "org/gitops";
const PROJECT: &str = "platform/apps/gitops";

struct World {
    _reg: TestRegistry,
    gh: FakeGithub,
    gl: FakeGitlab,
    apps: tempfile::TempDir,
    config: std::path::PathBuf,
}

/// `http://127.0.0.1:PORT/...` as `http://localhost:PORT/...`.
fn on_localhost(url: &str) -> String {
    url.replacen("127.0.0.1", "localhost", 1)
}

impl World {
    fn new(forges: &str) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
        reg.push_tags("team/web", &["2.0.0", "2.1.0"]);
        let gh = FakeGithub::start();
        gh.create_repo(REPO, &[("README.md", "GitOps\n")]);
        gh.set_permission(REPO, "alice", Role::Write);
        let gl = FakeGitlab::start();
        gl.create_project(PROJECT, &[("README.md", "GitOps\n")]);
        gl.add_member("platform", "alice", Access::Developer);
        let apps = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(apps.path().join("apps")).unwrap();
        for (name, image, url) in [
            ("api", reg.image("team/api"), gh.git_url(REPO)),
            ("web", reg.image("team/web"), on_localhost(&gl.git_url(PROJECT))),
        ] {
            let files = [
                (format!("envs/{name}/deployment.yaml"), deployment(name, &image)),
                (format!("envs/{name}/kustomization.yaml"), kustomization(&image, if name == "api" { "1.0.0" } else { "2.0.0" })),
            ];
            let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (p.as_str(), Some(c.as_str()))).collect();
            if name == "api" {
                gh.push_commit(REPO, "main", &files, "alice");
            } else {
                gl.push_commit(PROJECT, "main", &files, "alice");
            }
            let app = App::new(name, &url, &format!("envs/{name}")).image_list(&format!("{name}={image}:^{}", if name == "api" { "1.0" } else { "2.0" }));
            std::fs::write(apps.path().join("apps").join(format!("{name}.yaml")), app.to_yaml()).unwrap();
        }
        let forges = forges.replace("GITHUB_URL", &gh.url()).replace("GITLAB_URL", &on_localhost(&gl.url()));
        let config = apps.path().join("config.yaml");
        std::fs::write(&config, forges).unwrap();
        World { _reg: reg, gh, gl, apps, config }
    }

    fn run(&self) -> PlanOutput {
        Plan::command(&["run", "--once"])
            .arg("--config")
            .arg(&self.config)
            .env("GITHUB_TOKEN", fake_github::TOKEN)
            .env("GITLAB_TOKEN", fake_gitlab::TOKEN)
            .apps(self.apps.path().join("apps"))
            .json()
    }
}

const BOTH: &str = "forges:
- host: 127.0.0.1
  kind: github
  url: GITHUB_URL
- host: localhost
  kind: gitlab
  url: GITLAB_URL
";

#[test]
fn each_application_gets_its_pull_request_on_the_forge_of_its_repository() {
    let w = World::new(BOTH);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(out.app("api")["action"], "opened", "{out}");
    assert_eq!(out.app("web")["action"], "opened", "{out}");
    let pulls: Vec<_> = w.gh.pulls(REPO).into_iter().filter(|p| p.open).collect();
    assert_eq!(pulls.len(), 1, "one pull request on GitHub{out}");
    assert!(pulls[0].title.contains("api") && pulls[0].title.contains("1.1.0"), "{}", pulls[0].title);
    let mrs: Vec<_> = w.gl.mrs(PROJECT).into_iter().filter(|m| m.is_open()).collect();
    assert_eq!(mrs.len(), 1, "one merge request on GitLab{out}");
    assert!(mrs[0].title.contains("web") && mrs[0].title.contains("2.1.0"), "{}", mrs[0].title);

    // Nothing new: nothing written on either forge.
    let again = w.run();
    again.assert_exit(0);
    assert_eq!(again.app("api")["action"], "unchanged", "{again}");
    assert_eq!(again.app("web")["action"], "unchanged", "{again}");
    assert_eq!(again.plan()["stats"]["forge_writes"], 0, "{again}");
}

#[test]
fn a_repository_on_a_host_no_forge_is_configured_for_fails_by_name_and_alone() {
    let only_gitlab = "forges:\n- host: localhost\n  kind: gitlab\n  url: GITLAB_URL\n";
    let w = World::new(only_gitlab);
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(out.app("web")["action"], "opened", "{out}");
    let errors = out.plan()["errors"].to_string();
    assert!(errors.contains("no forge is configured for the git host \\\"127.0.0.1\\\""), "{out}");
    assert!(w.gh.pulls(REPO).is_empty(), "nothing sent to a forge nobody configured");
}

#[test]
fn a_forges_entry_of_an_unknown_kind_or_with_a_misspelt_key_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    for (yaml, says) in [
        ("forges:\n- host: git.example.com\n  kind: bitbucket\n", "forges[0].kind: \"bitbucket\" is not github or gitlab (host git.example.com)"),
        ("forges:\n- host: git.example.com\n  kind: gitlab\n  tokenfile: /x\n", "tokenfile"),
    ] {
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        let out = Plan::command(&["run", "--once"])
            .arg("--config")
            .arg(&config)
            .env("GITLAB_TOKEN", fake_gitlab::TOKEN)
            .apps(dir.path().join("apps"))
            .run();
        out.assert_exit(2);
        assert!(out.stderr.contains(says), "{out}");
    }
}
