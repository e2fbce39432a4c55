//! `--apps k8s`, ImageUpdaters and `pullsecret:`/`secret:` credentials end to end: the real
//! binary, the real registry (htpasswd and token auth), real git repositories, and the fake
//! Kubernetes API server (HTTPS with its own CA, service-account tokens, RBAC, pages), whose
//! answers tests/kube_fake.rs checks against the Kubernetes types.

mod support;

use serde_json::{Value, json};
use support::cli::{Plan, PlanOutput};
use support::fake_kube::{self, FakeKube};
use support::gitops::{App, GitRepo, deployment, kustomization};
use support::local_world::World;
use support::registry::{Auth, TestRegistry};

/// The Application manifest `yaml` as the API server keeps it, with a status.
fn in_cluster(kube: &FakeKube, yaml: &str, status: Option<Value>) {
    let mut object: Value = serde_saphyr::from_str(yaml).unwrap();
    if let Some(s) = status {
        object["status"] = s;
    }
    kube.apply(object);
}

/// Plans without what differs by where an Application was read (`file`) and by run (stats).
fn decisions(plan: &PlanOutput) -> Value {
    let apps = plan.plan()["applications"].as_array().cloned().unwrap_or_default();
    let stripped: Vec<Value> = apps.into_iter().map(|a| json!({"name": a["name"], "images": a["images"], "changes": a["changes"]})).collect();
    Value::Array(stripped)
}

/// A fleet of five Applications in git: `plan --apps k8s --kubeconfig K`, with the same
/// Applications in the cluster (read in pages), gives the plan `plan --apps <git>` gives.
#[test]
fn the_clusters_applications_plan_as_their_manifests_in_git() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let git = GitRepo::new();
    let kube = FakeKube::start();
    let mut manifests = Vec::new();
    for (i, name) in ["api", "web", "worker", "cart", "search"].iter().enumerate() {
        let repo = format!("team/{name}");
        reg.push_tags(&repo, &["1.0.0", &format!("1.{}.0", i + 1), "2.0.0"]);
        let image = reg.image(&repo);
        git.write(&format!("envs/{name}/kustomization.yaml"), &kustomization(&image, "1.0.0"));
        git.write(&format!("envs/{name}/deployment.yaml"), &deployment(name, &image));
        let app = App::new(name, &git.url(), &format!("envs/{name}")).image_list(&format!("app={image}:^1.0"));
        let app = if i % 2 == 0 { app } else { app.namespace("team-b") };
        git.write(&format!("apps/{name}.yaml"), &app.to_yaml());
        manifests.push(app.to_yaml());
    }
    git.commit("five Applications");
    for m in &manifests {
        in_cluster(&kube, m, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kube.kubeconfig(dir.path());

    let from_git = Plan::new().apps(git.path().join("apps")).json();
    from_git.assert_exit(0);
    let from_cluster = Plan::new().apps("k8s").arg("--kubeconfig").arg(&config).json();
    from_cluster.assert_exit(0);
    assert_eq!(decisions(&from_cluster), decisions(&from_git), "{from_cluster}");
    assert_eq!(from_cluster.app("web")["file"], "k8s:team-b/web", "{from_cluster}");
    let lists = kube.requests().iter().filter(|r| r.path.ends_with("/applications")).count();
    assert_eq!(lists, 1, "one listing of Applications, all namespaces");

    // One namespace; and a context whose token the API server refuses.
    let team_b = Plan::new().apps("k8s:team-b").arg("--kubeconfig").arg(&config).json();
    let names: Vec<&str> = team_b.plan()["applications"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cart", "web"], "{team_b}");
    let refused = Plan::new().apps("k8s").arg("--kubeconfig").arg(&config).arg("--context").arg("other").json();
    refused.assert_exit(1);
    let errors = refused.plan()["errors"].to_string();
    assert!(errors.contains("401") && errors.contains(&kube.url()) && errors.contains("applications.argoproj.io"), "{errors}");

    // Listing everywhere is forbidden (a Role per namespace, no ClusterRole): the error says so.
    kube.deny_cluster_wide(fake_kube::BOT_USER, "list", "applications");
    let forbidden = Plan::new().apps("k8s").arg("--kubeconfig").arg(&config).json();
    forbidden.assert_exit(1);
    let errors = forbidden.plan()["errors"].to_string();
    assert!(errors.contains("403") && errors.contains("in all namespaces"), "{errors}");
    kube.finish();
}

/// The registry's credentials are a pull secret in the cluster (htpasswd), or a `secret:` field
/// in registries.conf (token auth): both authenticate against the real registry; a Secret the
/// bot may not read is an error naming the Secret and the image, and nothing else stops.
#[test]
fn pull_secrets_from_the_cluster_authenticate_against_the_registry() {
    for auth in [Auth::htpasswd("robot", "s3cret-pw"), Auth::token("robot", "s3cret-pw")] {
        let reg = TestRegistry::start(auth.clone());
        reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
        let image = reg.image("team/api");
        let kube = FakeKube::start();
        let dockerconfig = json!({"auths": {reg.host(): {"username": "robot", "password": "s3cret-pw"}}}).to_string();
        kube.secret("argocd", "regcred", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", dockerconfig.as_bytes())]);
        kube.secret("argocd", "robot", "Opaque", &[("creds", b"robot:s3cret-pw")]);
        let git = GitRepo::new();
        git.write("envs/api/kustomization.yaml", &kustomization(&image, "1.0.0"));
        git.write("envs/api/deployment.yaml", &deployment("api", &image));
        let app = App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}:^1.0"));
        git.write("apps/api.yaml", &app.annotate("api.pull-secret", "pullsecret:argocd/regcred").to_yaml());
        git.commit("api, with a pull secret");
        let dir = tempfile::tempdir().unwrap();
        let config = kube.kubeconfig(dir.path());

        let plan = Plan::new().apps(git.path().join("apps")).arg("--kubeconfig").arg(&config).json();
        plan.assert_exit(0).assert_proposes("api", "api", "1.0.0", "1.1.0");
        let reads: Vec<_> = kube.requests().into_iter().filter(|r| r.path.ends_with("/secrets/regcred")).collect();
        assert_eq!(reads.len(), 1, "the Secret is read once per run: {reads:?}");

        // registries.conf names a secret: field for the registry.
        let conf = dir.path().join("registries.conf");
        let prefix = reg.host();
        std::fs::write(
            &conf,
            format!("registries:\n- name: private\n  prefix: {prefix}\n  api_url: http://{prefix}\n  credentials: secret:argocd/robot#creds\n"),
        )
        .unwrap();
        git.write("apps/api.yaml", &App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}:^1.0")).to_yaml());
        git.commit("credentials from registries.conf");
        let plan = Plan::new().apps(git.path().join("apps")).registries_conf(&conf).arg("--kubeconfig").arg(&config).json();
        plan.assert_exit(0).assert_proposes("api", "api", "1.0.0", "1.1.0");

        // The bot may not read it: the image's error names the reference, the Secret and the image.
        kube.deny(fake_kube::BOT_USER, "get", "secrets", Some("argocd"), Some("robot"));
        let plan = Plan::new().apps(git.path().join("apps")).registries_conf(&conf).arg("--kubeconfig").arg(&config).json();
        plan.assert_exit(1);
        let error = plan.image("api", "api")["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains("secret:argocd/robot#creds") && error.contains("Secret argocd/robot") && error.contains("403") && error.contains(&image),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        kube.finish();
    }
}

/// An ImageUpdater in the cluster configures an Application of the cluster; the PR's description
/// shows what Argo CD reports running beside what git has and what is proposed.
#[test]
fn an_image_updater_in_the_cluster_and_the_live_state_in_the_pr() {
    let w = World::new(&["1.0.0", "1.1.0", "2.0.0"], "1.0.0");
    let kube = FakeKube::start();
    // The Application in the cluster has no annotations: the ImageUpdater says it all.
    let bare = App::new("api", &w.url(), "envs/api").to_yaml();
    let status = json!({
        "sync": {"status": "OutOfSync", "revision": "5a1f0c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f"},
        "health": {"status": "Healthy"},
        "summary": {"images": [format!("{}:0.9.0", w.image), "docker.io/library/redis:7"]}
    });
    in_cluster(&kube, &bare, Some(status));
    kube.apply_yaml(&format!(
        "apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: team
  namespace: argocd
spec:
  applicationRefs:
    - namePattern: \"a*\"
      images:
        - alias: api
          imageName: {}:^1.0
",
        w.image
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = kube.kubeconfig(dir.path());
    let out = Plan::command(&["run", "--once", "--forge", "local"])
        .arg("--local-forge-dir")
        .arg(w.forge.path())
        .apps("k8s")
        .arg("--kubeconfig")
        .arg(&config)
        .json();
    out.assert_exit(0);
    assert_eq!(out.app("api")["action"], "opened", "{out}");
    let body = w.pr(1)["body"].as_str().unwrap().to_string();
    println!("{body}");
    assert!(body.contains("| `api` | `1.0.0` → `1.1.0` |"), "{body}");
    assert!(
        body.contains("Argo CD reports `argocd/api` `OutOfSync` and `Healthy`, synced to revision `5a1f0c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f`."),
        "{body}"
    );
    assert!(body.contains("| `api` | `0.9.0` (**not what git has**) | `1.0.0` | `1.1.0` |"), "{body}");
    kube.finish();
}

/// A source on another git server than the forge's (here, a private project on a GitLab the run
/// has no token for): `write-back-method: git:repocreds` reads it with Argo CD's repository
/// credentials (the longest `repo-creds` prefix), `git:secret:argocd/<name>` with that Secret.
#[test]
fn sources_the_forge_does_not_cover_are_read_with_argo_cds_repository_credentials() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    let gl = support::fake_gitlab::FakeGitlab::start();
    let project = "platform/apps/gitops";
    gl.create_project(project, &[("README.md", "private\n")]);
    gl.push_commit(
        project,
        "main",
        &[("envs/api/kustomization.yaml", Some(&kustomization(&image, "1.0.0"))), ("envs/api/deployment.yaml", Some(&deployment("api", &image)))],
        "root",
    );
    let kube = FakeKube::start();
    let creds = |name: &str, kind: &str, url: &str, password: &str| {
        kube.apply(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": kind}},
            "data": {"url": b64(url), "username": b64("oauth2"), "password": b64(password)}
        }));
    };
    creds("host-wide", "repo-creds", &gl.url(), "wrong-token");
    creds("platform", "repo-creds", &format!("{}/platform", gl.url()), support::fake_gitlab::TOKEN);
    kube.secret("argocd", "gitlab-creds", "Opaque", &[("username", b"oauth2"), ("password", support::fake_gitlab::TOKEN.as_bytes())]);
    let dir = tempfile::tempdir().unwrap();
    let config = kube.kubeconfig(dir.path());
    let apps = tempfile::tempdir().unwrap();
    let plan_with = |method: Option<&str>| {
        let app = App::new("api", &gl.git_url(project), "envs/api").image_list(&format!("api={image}:^1.0"));
        let app = match method {
            Some(m) => app.annotate("write-back-method", m),
            None => app,
        };
        std::fs::write(apps.path().join("api.yaml"), app.to_yaml()).unwrap();
        Plan::new().apps(apps.path()).arg("--kubeconfig").arg(&config).json()
    };

    let anonymous = plan_with(None);
    anonymous.assert_exit(1);
    assert!(anonymous.plan().to_string().contains(&gl.git_url(project)), "{anonymous}");
    for method in ["git:repocreds", "git:secret:argocd/gitlab-creds", "git:secret:gitlab-creds"] {
        kube.clear_requests();
        let plan = plan_with(Some(method));
        plan.assert_exit(0).assert_proposes("api", "api", "1.0.0", "1.1.0");
        let secret_reads = kube.requests().iter().filter(|r| r.path.contains("/secrets")).count();
        let want = if method == "git:repocreds" { 2 } else { 1 };
        assert_eq!(secret_reads, want, "{method}: one listing of each label (or the one Secret) per run");
    }
    // A Secret that is not there: the source's error names it and the Application.
    let missing = plan_with(Some("git:secret:argocd/nope"));
    missing.assert_exit(1);
    let text = missing.plan().to_string();
    assert!(text.contains("Secret argocd/nope") && text.contains("404") && text.contains("argocd/api"), "{text}");
    gl.finish();
    kube.finish();
}

/// Listings come in pages of 500; a continue token the API server expires between two pages
/// (etcd compacted the list's revision) restarts the listing once, and nothing is missed.
#[test]
fn a_listing_in_pages_survives_an_expired_continue_token() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    git.write("envs/api/kustomization.yaml", &kustomization(&image, "1.0.0"));
    git.write("envs/api/deployment.yaml", &deployment("api", &image));
    git.commit("api");
    let kube = FakeKube::start();
    // 700 Applications nobody asked the bot about, and one it manages, last in the listing.
    for i in 0..700 {
        kube.apply(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": format!("app-{i:03}"), "namespace": "argocd"},
            "spec": {"project": "default", "source": {"repoURL": git.url(), "path": "envs/api"}, "destination": {"namespace": "x"}}
        }));
    }
    let api = App::new("zz-api", &git.url(), "envs/api").image_list(&format!("api={image}:^1.0"));
    in_cluster(&kube, &api.to_yaml(), None);
    let dir = tempfile::tempdir().unwrap();
    let config = kube.kubeconfig(dir.path());
    kube.expire_next_continue();
    let plan = Plan::new().apps("k8s").arg("--kubeconfig").arg(&config).json();
    plan.assert_exit(0).assert_proposes("zz-api", "api", "1.0.0", "1.1.0");
    let pages: Vec<(String, u16)> =
        kube.requests().iter().filter(|r| r.path.ends_with("/applications")).map(|r| (r.query.clone(), r.status)).collect();
    let statuses: Vec<u16> = pages.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [200, 410, 200, 200], "page, expired page, then the listing again: {pages:?}");
    assert!(pages.iter().all(|(q, _)| q.contains("limit=500")), "{pages:?}");
    kube.finish();
}
