//! Issue 14, run as a platform engineer runs the bot: with one bad location among good ones,
//! duplicate Applications, holds kept in git, the deploy base's configuration, logs read by a
//! log store. The real binary, a real `docker-registry`, real git.

mod support;

use serde_json::Value;
use support::cli::Plan;
use support::gitops::{App, GitRepo, deployment, kustomization};
use support::oci_push::ImageSpec;
use support::registry::{Auth, TestRegistry};

/// A registry with `team/api` at 1.0.0, 1.1.0 and 2.0.0, and one GitOps repository whose
/// Application `api` (Kustomize, `^1.0` unless given) runs 1.0.0.
fn world(constraint: &str) -> (TestRegistry, GitRepo, String) {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0", "2.0.0"]);
    let image = reg.image("team/api");
    let git = GitRepo::new();
    git.write("envs/api/kustomization.yaml", &kustomization(&image, "1.0.0"));
    git.write("envs/api/deployment.yaml", &deployment("api", &image));
    git.write("apps/api.yaml", &App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}{constraint}")).to_yaml());
    git.commit("api runs 1.0.0");
    (reg, git, image)
}

/// Point 1: a git server that accepts and never answers fails alone, by name, at the deadline.
#[test]
fn a_location_that_never_answers_fails_alone_at_the_deadline() {
    let (_reg, git, _) = world(":^1.0");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("http://{}/org/gitops.git", silent.local_addr().unwrap());
    let plan = Plan::new().apps(git.path().join("apps")).arg("--apps").arg(&hung).arg("--timeout").arg("2s").arg("--git-timeout").arg("5s").json();
    plan.assert_exit(1);
    plan.assert_proposes("api", "api", "1.0.0", "1.1.0");
    let errors = plan.errors();
    assert!(errors.iter().any(|e| e["file"] == hung.as_str()), "the location is named{plan}");
    drop(silent);
}

/// Point 2: two manifests of one Application (two `--apps` locations) are an error naming both;
/// neither is proposed.
#[test]
fn duplicate_applications_are_an_error_naming_both_files() {
    let (_reg, git, image) = world(":^1.0");
    let other = tempfile::tempdir().unwrap();
    let copy = App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}:^2.0")).to_yaml();
    std::fs::write(other.path().join("api-copy.yaml"), copy).unwrap();
    let plan = Plan::new().apps(git.path().join("apps")).arg("--apps").arg(other.path()).json();
    plan.assert_exit(1);
    assert!(plan.applications().iter().all(|a| a["name"] != "api"), "neither is planned{plan}");
    let text = plan.errors().iter().map(|e| format!("{} {}", e["file"], e["error"])).collect::<String>();
    assert!(text.contains("api.yaml") && text.contains("api-copy.yaml") && text.contains("defined 2 times"), "{text}");
}

/// Point 3: `plan` applies the pin annotation as `run` does, refuses what `run` refuses, and
/// says that holds kept on the forge were not read.
#[test]
fn plan_shows_what_run_would_do_with_the_holds_git_shows() {
    let (_reg, git, image) = world("");
    let app = App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}")).to_yaml();
    let pinned = app.replace("  annotations:\n", "  annotations:\n    argocd-image-pr.io/pin: \"api=1.1.0\"\n");
    git.write("apps/api.yaml", &pinned);
    let mut broken = App::new("broken", &git.url(), "envs/api").image_list(&format!("api={image}")).to_yaml();
    broken = broken.replace("  annotations:\n", "  annotations:\n    argocd-image-pr.io/draft: \"maybe\"\n");
    git.write("apps/broken.yaml", &broken);
    git.commit("pin and a broken draft value");

    let plan = Plan::new().apps(git.path()).json();
    plan.assert_exit(1);
    plan.assert_proposes("api", "api", "1.0.0", "1.1.0");
    let error = plan.app("broken")["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("argocd-image-pr.io/draft"), "{error}{plan}");
    assert_eq!(plan.image("broken", "api")["proposed"], Value::Null, "run would not propose it{plan}");
    let notes = plan.plan()["notes"].to_string();
    assert!(notes.contains("not read") && notes.contains("status"), "{notes}");
}

/// Point 4: the deploy base's configuration runs without the optional pull-secret Secret.
#[test]
fn the_deploy_base_configuration_runs_without_the_optional_secret() {
    let (_reg, git, _) = world(":^1.0");
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base");
    let config = std::fs::read_to_string(base.join("config.yaml")).unwrap();
    assert!(config.contains("optionalDockerConfigs:\n  - /etc/argocd-image-pr-secret/.dockerconfigjson"), "{config}");
    assert!(!std::path::Path::new("/etc/argocd-image-pr-secret/.dockerconfigjson").exists());
    let dir = tempfile::tempdir().unwrap();
    let config = config
        .replace("https://github.com/example-org/gitops.git", &git.path().join("apps").display().to_string())
        .replace("/etc/argocd-image-pr/registries.conf", &base.join("registries.conf").display().to_string())
        .replace("/var/cache/argocd-image-pr", &dir.path().join("cache").display().to_string());
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let plan = Plan::command(&["plan"]).arg("--config").arg(dir.path().join("config.yaml")).arg("--log").arg("info").json();
    plan.assert_exit(0);
    plan.assert_proposes("api", "api", "1.0.0", "1.1.0");
    assert!(plan.stderr.contains("optional docker config /etc/argocd-image-pr-secret/.dockerconfigjson is absent"), "{plan}");
}

/// Point 5: progress at info, no colour when stderr is not a terminal, JSON lines on request, and
/// a filter that does not parse is an error.
#[test]
fn logs_show_progress_as_text_or_json_and_a_bad_filter_is_an_error() {
    let (_reg, git, _) = world(":^1.0");
    let plan = Plan::new().apps(git.path()).arg("--log").arg("info").json();
    plan.assert_exit(0);
    assert!(plan.stderr.contains("discovery: 1 Applications") && plan.stderr.contains("plan done"), "{plan}");
    assert!(!plan.stderr.contains('\u{1b}'), "no ANSI colour into a pipe{plan}");
    let plan = Plan::new().apps(git.path()).arg("--log").arg("info").arg("--log-format").arg("json").json();
    plan.assert_exit(0);
    let lines: Vec<&str> = plan.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let plan = Plan::new().apps(git.path()).arg("--log").arg("info,=debug").run();
    assert_eq!(plan.code, 2, "{plan}");
    assert!(plan.stderr.contains("--log"), "{plan}");
}

/// Point 6: the messages say what is wrong, not something nearby.
#[test]
fn messages_name_the_real_problem() {
    let (reg, git, image) = world(":^1.0");
    // A nonexistent `--apps` directory.
    let plan = Plan::new().apps("./no-such-apps-dir").json();
    plan.assert_exit(1);
    assert!(plan.errors().iter().any(|e| e["error"].as_str().unwrap_or("").contains("no such directory")), "{plan}");
    // A broken registries.conf: its error, without "no Application" before it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registries.conf"), "registries: [{prefix: x, limit: 0}]\n").unwrap();
    let plan = Plan::new().apps(git.path()).registries_conf(dir.path().join("registries.conf")).table();
    assert!(plan.stdout.contains("limit") && !plan.stdout.contains("no Application"), "{plan}");
    // A misspelled annotation key and an unknown registries.conf key: warnings naming them.
    let app = App::new("api", &git.url(), "envs/api").image_list(&format!("api={image}:^1.0")).annotate("api.update-stratgy", "semver");
    git.write("apps/api.yaml", &app.to_yaml());
    // A platform no image has, and a source path that does not exist.
    git.write("apps/arm.yaml", &App::new("arm", &git.url(), "envs/api").image_list(&format!("api={image}")).annotate("api.platforms", "linux/s390x").annotate("api.update-strategy", "newest-build").to_yaml());
    git.write("apps/gone.yaml", &App::new("gone", &git.url(), "envs/gone").image_list(&format!("api={image}")).to_yaml());
    git.commit("typos");
    std::fs::write(dir.path().join("ok.conf"), format!("registries:\n- prefix: {}\n  crendentials: env:X\n", reg.host())).unwrap();
    let plan = Plan::new().apps(git.path()).registries_conf(dir.path().join("ok.conf")).json();
    assert!(plan.stderr.contains("apps/api.yaml") && plan.stderr.contains("api.update-stratgy"), "{plan}");
    assert!(plan.stderr.contains("registries[0].crendentials"), "{plan}");
    let arm = plan.image("arm", "api")["reason"].as_str().unwrap_or_default().to_string();
    assert!(arm.contains("linux/s390x") && !arm.contains("allow-tags"), "{arm}{plan}");
    let gone = plan.image("gone", "api")["error"].as_str().unwrap_or_default().to_string();
    assert!(gone.contains("envs/gone") && gone.contains("does not exist"), "{gone}{plan}");
}

/// Point 7: newest-build does not propose `latest` when a versioned tag names the same image.
#[test]
fn newest_build_proposes_the_versioned_tag_not_latest() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/worker", &["build-100"]);
    // `latest` is the very image `build-101` is (same manifest, same digest).
    let newest = ImageSpec::new(&support::registry::day(1), "team/worker build 101");
    let d1 = reg.push_image("team/worker", "build-101", &newest);
    let d2 = reg.push_image("team/worker", "latest", &newest);
    assert_eq!(d1, d2);
    let image = reg.image("team/worker");
    let git = GitRepo::new();
    git.write("envs/worker/kustomization.yaml", &kustomization(&image, "build-100"));
    git.write("envs/worker/deployment.yaml", &deployment("worker", &image));
    let app = App::new("worker", &git.url(), "envs/worker").image_list(&format!("worker={image}")).annotate("worker.update-strategy", "newest-build");
    git.write("apps/worker.yaml", &app.to_yaml());
    git.commit("worker");
    let plan = Plan::new().apps(git.path()).json();
    plan.assert_exit(0);
    plan.assert_proposes("worker", "worker", "build-100", "build-101");
}

/// Points 1 and 4: every kustomization in deploy/ renders, and the CronJob cannot block later
/// runs, has limits, no API token, a cache that survives runs; the example overlay changes only
/// the `apps:` location.
#[test]
fn every_kustomization_renders_with_deadlines_limits_and_no_token() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let render = |dir: &str| {
        let out = std::process::Command::new("kubectl")
            .args(["kustomize"])
            .arg(root.join(dir))
            .output()
            .unwrap_or_else(|e| panic!("kubectl is missing ({e}): run scripts/test.sh, it installs it"));
        assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let base = render("base");
    for want in [
        "activeDeadlineSeconds: 1200",
        "backoffLimit: 0",
        "startingDeadlineSeconds: 120",
        "concurrencyPolicy: Forbid",
        "automountServiceAccountToken: false",
        "memory: 256Mi",
        "claimName: argocd-image-pr-cache",
        "kind: PersistentVolumeClaim",
        "optionalDockerConfigs",
    ] {
        assert!(base.contains(want), "deploy/base lacks {want:?}:\n{base}");
    }
    let daemon = render("daemon");
    assert!(!daemon.contains("kind: CronJob") && daemon.contains("kind: Deployment"), "{daemon}");
    assert!(daemon.contains("automountServiceAccountToken: false") && daemon.contains("memory: 256Mi"), "{daemon}");
    let example = render("overlays/example");
    assert!(example.contains("https://github.com/your-org/your-gitops.git"), "{example}");
    assert!(example.contains("registries.conf: |") || example.contains("registries.conf:"), "registries.conf is kept:\n{example}");
    // Reading the cluster: read-only rules, Secrets by name only, the token mounted for the
    // Deployment alone.
    let cluster = render("overlays/cluster");
    for want in [
        "resources:\n  - applications\n  verbs:\n  - get\n  - list\n  - watch",
        "resources:\n  - imageupdaters\n  verbs:\n  - get\n  - list\n  - watch",
        "resourceNames:\n  - regcred\n  resources:\n  - secrets\n  verbs:\n  - get\n",
        "automountServiceAccountToken: true",
        "      - k8s\n",
    ] {
        assert!(cluster.contains(want), "deploy/overlays/cluster lacks {want:?}:\n{cluster}");
    }
    for verb in ["create", "update", "patch", "delete", "\"*\""] {
        assert!(!cluster.contains(&format!("  - {verb}\n")), "no {verb} for the bot:\n{cluster}");
    }
    assert!(!cluster.contains("kind: CronJob"), "{cluster}");
    // Every workload runs as the image's user (Dockerfile, scripts/image.sh), read-only, without
    // capabilities, writing to /tmp and its cache only.
    let dockerfile = std::fs::read_to_string(root.join("../Dockerfile")).unwrap();
    let image_sh = std::fs::read_to_string(root.join("../scripts/image.sh")).unwrap();
    assert!(dockerfile.contains("USER 65532:65532") && image_sh.contains("--user 65532:65532"), "the image's user");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/argocd-image-pr\"]") && image_sh.contains("--entrypoint '[\"/usr/local/bin/argocd-image-pr\"]'"));
    for (name, rendered) in [("base", &base), ("daemon", &daemon), ("overlays/cluster", &cluster)] {
        for want in [
            "runAsNonRoot: true",
            "runAsUser: 65532",
            "readOnlyRootFilesystem: true",
            "allowPrivilegeEscalation: false",
            "drop:\n",
            "- ALL",
            "mountPath: /tmp",
            "type: RuntimeDefault",
        ] {
            assert!(rendered.contains(want), "deploy/{name} lacks {want:?}:\n{rendered}");
        }
    }
    let locked = render("overlays/locked-down");
    assert!(locked.contains("kind: NetworkPolicy") && locked.contains("port: 443") && locked.contains("port: 8080"), "{locked}");

}
