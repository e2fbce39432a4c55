//! `argocd-image-pr plan` shows the exact change it would commit: the real binary, a real
//! `docker-registry` on loopback, real git repositories. Every diff is compared as text, so a
//! stray byte anywhere in a proposed change fails the test.

mod support;

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::gitops::{App, GitRepo, deployment};
use support::oci_push::ImageSpec;
use support::registry::{Auth, TestRegistry, day};

/// `(repo, file, diff)` of every entry of the Application's `changes`, in order.
fn changes(plan: &PlanOutput, app: &str) -> Vec<(String, String, String)> {
    let list = plan.app(app)["changes"].as_array().unwrap_or_else(|| panic!("{app}: no changes array{plan}"));
    list.iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{app}: change without {k}{plan}")).to_string();
            (s("repo"), s("file"), s("diff"))
        })
        .collect()
}

/// Asserts the Application's only change is `diff` in `file` of `repo`.
fn assert_one_change(plan: &PlanOutput, app: &str, repo: &str, file: &str, diff: &str) {
    let got = changes(plan, app);
    assert_eq!(got.len(), 1, "{app}: expected one changed file, got {got:#?}{plan}");
    let (r, f, d) = &got[0];
    assert_eq!((r.as_str(), f.as_str()), (repo, file), "{app}: repo and file{plan}");
    assert_eq!(d, diff, "{app}: diff{plan}");
}

fn assert_no_changes(plan: &PlanOutput, app: &str) {
    assert_eq!(plan.app(app)["changes"], Value::Array(vec![]), "{app}: nothing may change{plan}");
}

/// An Application in `apps/<name>.yaml` whose source is `envs/<name>` of the same repository.
fn app(git: &GitRepo, name: &str) -> App {
    App::new(name, &git.url(), &format!("envs/{name}"))
}

fn write_app(git: &GitRepo, app: &App) {
    git.write(&format!("apps/{}.yaml", app.name), &app.to_yaml());
}

#[test]
fn kustomize_layouts_change_only_the_tag() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    reg.push_tags("team/web", &["2.0.0", "2.1.0"]);
    let (api, web) = (reg.image("team/api"), reg.image("team/web"));
    let git = GitRepo::new();
    let url = git.url();

    // The images entry renames `api`: newTag moves, newName stays.
    write_app(&git, &app(&git, "renamed").image_list(&format!("api={api}:^1.0")));
    git.write(
        "envs/renamed/kustomization.yaml",
        &format!("resources:\n  - deployment.yaml\nimages:\n  - name: api\n    newName: {api}\n    newTag: 1.0.0\n"),
    );
    git.write("envs/renamed/deployment.yaml", &deployment("renamed", "api"));

    // The overlay has no entry and its workload lives in a base outside the source path: an
    // entry is added, as `kustomize edit set image` would.
    write_app(&git, &app(&git, "added").image_list(&format!("api={api}:^1.0")));
    git.write("envs/added/kustomization.yaml", "resources:\n  - ../../base/added\n");
    git.write("base/added/kustomization.yaml", "resources:\n  - deployment.yaml\n");
    git.write("base/added/deployment.yaml", &deployment("added", &format!("{api}:1.0.0")));

    // AIU's override file next to the source.
    write_app(&git, &app(&git, "override").image_list(&format!("api={api}:^1.0")));
    git.write("envs/override/kustomization.yaml", "resources:\n  - ../../base/added\n");
    git.write("envs/override/.argocd-source-override.yaml", &format!("kustomize:\n  images:\n    - {api}:1.0.0\n"));

    // write-back-target relative to the source path, and `/`-absolute from the repository root.
    let base = |dir: &str| {
        git.write(&format!("{dir}/base/kustomization.yaml"), &format!("resources:\n  - deployment.yaml\nimages:\n  - name: {api}\n    newTag: 1.0.0\n"));
        git.write(&format!("{dir}/base/deployment.yaml"), &deployment("wb", &api));
        git.write(&format!("{dir}/overlay/kustomization.yaml"), "resources:\n  - ../base\n");
    };
    base("envs/wb-rel");
    base("envs/wb-abs");
    let wb = |name: &str, target: &str| {
        App::new(name, &url, &format!("envs/{name}/overlay"))
            .image_list(&format!("api={api}:^1.0"))
            .annotate("write-back-target", target)
    };
    write_app(&git, &wb("wb-rel", "kustomization:../base"));
    write_app(&git, &wb("wb-abs", "kustomization:/envs/wb-abs/base"));

    // Two images of one Application in one file: both edits in one diff.
    write_app(&git, &app(&git, "pair").image_list(&format!("api={api}:^1.0, web={web}:^2.0")));
    git.write(
        "envs/pair/kustomization.yaml",
        &format!(
            "resources:\n  - deployment.yaml\nimages:\n  - name: {api}\n    newTag: 1.0.0\n  - name: {web}\n    newTag: 2.0.0\n"
        ),
    );
    git.write("envs/pair/deployment.yaml", &deployment("pair", &api));
    git.commit("kustomize layouts");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("renamed", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "renamed",
        &url,
        "envs/renamed/kustomization.yaml",
        &format!(
            "--- a/envs/renamed/kustomization.yaml\n+++ b/envs/renamed/kustomization.yaml\n@@ -3,4 +3,4 @@\n \
             images:\n   - name: api\n     newName: {api}\n-    newTag: 1.0.0\n+    newTag: 1.1.0\n"
        ),
    );
    plan.assert_proposes("added", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "added",
        &url,
        "envs/added/kustomization.yaml",
        &format!(
            "--- a/envs/added/kustomization.yaml\n+++ b/envs/added/kustomization.yaml\n@@ -1,2 +1,5 @@\n \
             resources:\n   - ../../base/added\n+images:\n+  - name: {api}\n+    newTag: 1.1.0\n"
        ),
    );
    plan.assert_proposes("override", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "override",
        &url,
        "envs/override/.argocd-source-override.yaml",
        &format!(
            "--- a/envs/override/.argocd-source-override.yaml\n+++ b/envs/override/.argocd-source-override.yaml\n\
             @@ -1,3 +1,3 @@\n kustomize:\n   images:\n-    - {api}:1.0.0\n+    - {api}:1.1.0\n"
        ),
    );
    for name in ["wb-rel", "wb-abs"] {
        plan.assert_proposes(name, "api", "1.0.0", "1.1.0");
        let file = format!("envs/{name}/base/kustomization.yaml");
        assert_one_change(
            &plan,
            name,
            &url,
            &file,
            &format!(
                "--- a/{file}\n+++ b/{file}\n@@ -2,4 +2,4 @@\n   - deployment.yaml\n images:\n   - name: {api}\n\
                 -    newTag: 1.0.0\n+    newTag: 1.1.0\n"
            ),
        );
    }
    plan.assert_proposes("pair", "api", "1.0.0", "1.1.0");
    plan.assert_proposes("pair", "web", "2.0.0", "2.1.0");
    assert_one_change(
        &plan,
        "pair",
        &url,
        "envs/pair/kustomization.yaml",
        &format!(
            "--- a/envs/pair/kustomization.yaml\n+++ b/envs/pair/kustomization.yaml\n@@ -2,6 +2,6 @@\n   - deployment.yaml\n \
             images:\n   - name: {api}\n-    newTag: 1.0.0\n+    newTag: 1.1.0\n   - name: {web}\n-    newTag: 2.0.0\n+    newTag: 2.1.0\n"
        ),
    );
}

#[test]
fn plain_manifests_keep_every_other_byte() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let api = reg.image("team/api");
    let git = GitRepo::new();
    let url = git.url();

    // Two containers of the same image and an init container: all three move.
    write_app(&git, &app(&git, "plain").image_list(&format!("api={api}:^1.0")));
    git.write(
        "envs/plain/deployment.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: plain\nspec:\n  template:\n    spec:\n      \
             initContainers:\n        - name: migrate\n          image: {api}:1.0.0\n      containers:\n        \
             - name: web\n          image: {api}:1.0.0\n        - name: worker\n          image: {api}:1.0.0\n        \
             - name: log-shipper\n          image: docker.io/fluent/fluent-bit:3.0.0\n"
        ),
    );

    // CRLF line endings, a comment on the edited line, quotes, and no final newline.
    write_app(&git, &app(&git, "hostile").image_list(&format!("api={api}:^1.0")));
    let hostile = format!(
        "# hand-written\r\napiVersion: apps/v1\r\nkind: Deployment\r\nspec:\r\n  template:\r\n    spec:\r\n      \
         containers:\r\n      - name: api   # the app\r\n        image: \"{api}:1.0.0\"   # bumped by the bot\r\n        \
         args: [\"--port\", '8080']"
    );
    git.write("envs/hostile/deployment.yaml", &hostile);
    git.commit("plain manifests");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("plain", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "plain",
        &url,
        "envs/plain/deployment.yaml",
        &format!(
            "--- a/envs/plain/deployment.yaml\n+++ b/envs/plain/deployment.yaml\n@@ -7,11 +7,11 @@\n     spec:\n       \
             initContainers:\n         - name: migrate\n-          image: {api}:1.0.0\n+          image: {api}:1.1.0\n       \
             containers:\n         - name: web\n-          image: {api}:1.0.0\n+          image: {api}:1.1.0\n         \
             - name: worker\n-          image: {api}:1.0.0\n+          image: {api}:1.1.0\n         - name: log-shipper\n           \
             image: docker.io/fluent/fluent-bit:3.0.0\n"
        ),
    );
    plan.assert_proposes("hostile", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "hostile",
        &url,
        "envs/hostile/deployment.yaml",
        &format!(
            "--- a/envs/hostile/deployment.yaml\n+++ b/envs/hostile/deployment.yaml\n@@ -6,5 +6,5 @@\n     spec:\r\n       \
             containers:\r\n       - name: api   # the app\r\n-        image: \"{api}:1.0.0\"   # bumped by the bot\r\n\
             +        image: \"{api}:1.1.0\"   # bumped by the bot\r\n         args: [\"--port\", '8080']\n\\ No newline at end of file\n"
        ),
    );
}

#[test]
fn helm_values_and_parameters_of_an_application_kept_in_its_source_repository() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let api = reg.image("team/api");
    let git = GitRepo::new();
    let url = git.url();
    let chart = |name: &str, values: &str| {
        git.write(&format!("envs/{name}/Chart.yaml"), &format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"));
        git.write(&format!("envs/{name}/values.yaml"), values);
    };

    // AIU's default keys image.name / image.tag.
    chart("defaults", &format!("replicas: 2\nimage:\n  name: {api}\n  tag: 1.0.0  # current\n  pullPolicy: IfNotPresent\n"));
    write_app(&git, &app(&git, "defaults").image_list(&format!("api={api}:^1.0")));

    // helm.image-spec: one value holds name and tag.
    chart("spec", &format!("api:\n  image: {api}:1.0.0\n  port: 8080\n"));
    write_app(&git, &app(&git, "spec").image_list(&format!("api={api}:^1.0")).annotate("api.helm.image-spec", "api.image"));

    // spec.source.helm.parameters of the Application manifest, kept in the very repository
    // its source points to (the apps are given as that repository's git URL).
    chart("params", "replicas: 1\n");
    let mut params = app(&git, "params").image_list(&format!("api={api}:^1.0"));
    params.source_extra = "    helm:\n      parameters:\n        - name: image.tag\n          value: \"1.0.0\"\n".into();
    write_app(&git, &params);
    git.commit("helm apps");

    let plan = Plan::new().apps(&url).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("defaults", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "defaults",
        &url,
        "envs/defaults/values.yaml",
        &format!(
            "--- a/envs/defaults/values.yaml\n+++ b/envs/defaults/values.yaml\n@@ -1,5 +1,5 @@\n replicas: 2\n image:\n   \
             name: {api}\n-  tag: 1.0.0  # current\n+  tag: 1.1.0  # current\n   pullPolicy: IfNotPresent\n"
        ),
    );
    plan.assert_proposes("spec", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "spec",
        &url,
        "envs/spec/values.yaml",
        &format!(
            "--- a/envs/spec/values.yaml\n+++ b/envs/spec/values.yaml\n@@ -1,3 +1,3 @@\n api:\n-  image: {api}:1.0.0\n\
             +  image: {api}:1.1.0\n   port: 8080\n"
        ),
    );
    plan.assert_proposes("params", "api", "1.0.0", "1.1.0");
    assert_one_change(
        &plan,
        "params",
        &url,
        "apps/params.yaml",
        "--- a/apps/params.yaml\n+++ b/apps/params.yaml\n@@ -14,7 +14,7 @@\n     helm:\n       parameters:\n         \
         - name: image.tag\n-          value: \"1.0.0\"\n+          value: \"1.1.0\"\n   destination:\n     \
         server: https://kubernetes.default.svc\n     namespace: params\n",
    );
}

#[test]
fn a_multi_source_application_is_edited_in_each_repository() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    reg.push_tags("team/web", &["2.0.0", "2.1.0"]);
    let (api, web) = (reg.image("team/api"), reg.image("team/web"));
    let (first, second, apps) = (GitRepo::new(), GitRepo::new(), GitRepo::new());
    first.write("api/deployment.yaml", &deployment("api", &format!("{api}:1.0.0")));
    first.commit("api");
    second.write("web/kustomization.yaml", &format!("resources:\n  - deployment.yaml\nimages:\n  - name: {web}\n    newTag: 2.0.0\n"));
    second.write("web/deployment.yaml", &deployment("web", &web));
    second.commit("web");
    apps.write(
        "apps/multi.yaml",
        &format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: multi\n  namespace: argocd\n  \
             annotations:\n    argocd-image-updater.argoproj.io/image-list: \"api={api}:^1.0, web={web}:^2.0\"\n\
             spec:\n  project: default\n  sources:\n    - repoURL: {}\n      targetRevision: main\n      path: api\n    \
             - repoURL: {}\n      targetRevision: main\n      path: web\n  destination:\n    \
             server: https://kubernetes.default.svc\n    namespace: multi\n",
            first.url(),
            second.url()
        ),
    );
    apps.commit("multi-source app");

    let plan = Plan::new().apps(apps.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("multi", "api", "1.0.0", "1.1.0");
    plan.assert_proposes("multi", "web", "2.0.0", "2.1.0");
    let got = changes(&plan, "multi");
    let want = vec![
        (
            first.url(),
            "api/deployment.yaml".to_string(),
            format!(
                "--- a/api/deployment.yaml\n+++ b/api/deployment.yaml\n@@ -14,7 +14,7 @@\n     spec:\n       containers:\n         \
                 - name: api\n-          image: {api}:1.0.0\n+          image: {api}:1.1.0\n           ports:\n             \
                 - containerPort: 8080\n         - name: log-shipper\n"
            ),
        ),
        (
            second.url(),
            "web/kustomization.yaml".to_string(),
            format!(
                "--- a/web/kustomization.yaml\n+++ b/web/kustomization.yaml\n@@ -2,4 +2,4 @@\n   - deployment.yaml\n images:\n   \
                 - name: {web}\n-    newTag: 2.0.0\n+    newTag: 2.1.0\n"
            ),
        ),
    ];
    assert_eq!(got, want, "{plan}");
}

#[test]
fn digests_are_written_as_tag_at_digest_or_the_kustomize_digest_field() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let old = reg.push_image("team/edge", "stable", &ImageSpec::new(&day(0), "first build"));
    let new = reg.push_image("team/edge", "stable", &ImageSpec::new(&day(1), "second build"));
    let pinned = reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let (edge, api) = (reg.image("team/edge"), reg.image("team/api"));
    let git = GitRepo::new();
    let url = git.url();

    let digest_app = |name: &str| app(&git, name).image_list(&format!("edge={edge}:stable")).annotate("edge.update-strategy", "digest");
    write_app(&git, &digest_app("edge-plain"));
    git.write("envs/edge-plain/pod.yaml", &format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: edge\n      image: {edge}:stable@{old}\n"));
    write_app(&git, &digest_app("edge-kustomize"));
    git.write(
        "envs/edge-kustomize/kustomization.yaml",
        &format!("resources:\n  - pod.yaml\nimages:\n  - name: {edge}\n    newTag: stable\n    digest: {old}\n"),
    );
    git.write("envs/edge-kustomize/pod.yaml", &format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: edge\n      image: {edge}\n"));

    // semver, with our own annotation to pin the digest alongside the tag.
    let pin = app(&git, "pinned").image_list(&format!("api={api}:^1.0"));
    let yaml = pin.to_yaml().replacen(
        "  annotations:\n",
        "  annotations:\n    argocd-image-pr.io/api.pin-digest: \"true\"\n",
        1,
    );
    git.write("apps/pinned.yaml", &yaml);
    git.write(
        "envs/pinned/kustomization.yaml",
        &format!("resources:\n  - deployment.yaml\nimages:\n  - name: {api}\n    newTag: 1.0.0\n"),
    );
    git.write("envs/pinned/deployment.yaml", &deployment("pinned", &api));
    git.commit("digests");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    assert_eq!(plan.image("edge-plain", "edge")["digest"], new.as_str(), "{plan}");
    assert_one_change(
        &plan,
        "edge-plain",
        &url,
        "envs/edge-plain/pod.yaml",
        &format!(
            "--- a/envs/edge-plain/pod.yaml\n+++ b/envs/edge-plain/pod.yaml\n@@ -3,4 +3,4 @@\n spec:\n   containers:\n     \
             - name: edge\n-      image: {edge}:stable@{old}\n+      image: {edge}:stable@{new}\n"
        ),
    );
    assert_one_change(
        &plan,
        "edge-kustomize",
        &url,
        "envs/edge-kustomize/kustomization.yaml",
        &format!(
            "--- a/envs/edge-kustomize/kustomization.yaml\n+++ b/envs/edge-kustomize/kustomization.yaml\n@@ -3,4 +3,4 @@\n \
             images:\n   - name: {edge}\n     newTag: stable\n-    digest: {old}\n+    digest: {new}\n"
        ),
    );
    plan.assert_proposes("pinned", "api", "1.0.0", "1.1.0");
    assert_eq!(plan.image("pinned", "api")["digest"], pinned[1].as_str(), "{plan}");
    assert_one_change(
        &plan,
        "pinned",
        &url,
        "envs/pinned/kustomization.yaml",
        &format!(
            "--- a/envs/pinned/kustomization.yaml\n+++ b/envs/pinned/kustomization.yaml\n@@ -2,4 +2,5 @@\n   - deployment.yaml\n \
             images:\n   - name: {api}\n-    newTag: 1.0.0\n+    newTag: 1.1.0\n+    digest: {}\n",
            pinned[1]
        ),
    );
}

#[test]
fn what_cannot_be_edited_safely_is_refused_with_file_and_line_and_changes_nothing() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let api = reg.image("team/api");
    let git = GitRepo::new();

    // The image sits behind a YAML anchor: which container uses it would be a guess.
    write_app(&git, &app(&git, "anchored").image_list(&format!("api={api}:^1.0")));
    git.write(
        "envs/anchored/deployment.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        \
             - name: a\n          image: &img {api}:1.0.0\n        - name: b\n          image: *img\n"
        ),
    );

    // A write-back-target that leaves the repository.
    write_app(
        &git,
        &app(&git, "escape").image_list(&format!("api={api}:^1.0")).annotate("write-back-target", "kustomization:../../../elsewhere"),
    );
    git.write("envs/escape/kustomization.yaml", &format!("images:\n  - name: {api}\n    newTag: 1.0.0\n"));

    // Issue 15: write-back targets the Application does not deploy (a CI workflow, another
    // team's kustomization) are refused; an overlay's own base stays allowed (wb-rel, wb-abs).
    for (name, target) in [("to-ci", "helmvalues:/.github/workflows/ci.yaml"), ("to-other", "kustomization:/teams/other")] {
        write_app(&git, &app(&git, name).image_list(&format!("api={api}:^1.0")).annotate("write-back-target", target));
        git.write(&format!("envs/{name}/kustomization.yaml"), &format!("images:\n  - name: {api}\n    newTag: 1.0.0\n"));
    }
    git.write(".github/workflows/ci.yaml", "on: pull_request\njobs: {}\n");
    git.write("teams/other/kustomization.yaml", &format!("images:\n  - name: {api}\n    newTag: 1.0.0\n"));

    // The kustomization is a symbolic link (inside the repository): read, but never written through.
    write_app(&git, &app(&git, "linked").image_list(&format!("api={api}:^1.0")));
    git.write("shared/kustomization.yaml", &format!("images:\n  - name: {api}\n    newTag: 1.0.0\n"));
    std::fs::create_dir_all(git.path().join("envs/linked")).unwrap();
    std::os::unix::fs::symlink("../../shared/kustomization.yaml", git.path().join("envs/linked/kustomization.yaml")).unwrap();

    // A values file that is a link out of the repository is not read.
    write_app(&git, &app(&git, "outside").image_list(&format!("api={api}:^1.0")));
    git.write("envs/outside/Chart.yaml", "apiVersion: v2\nname: outside\nversion: 0.1.0\n");
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("values.yaml"), "image:\n  tag: 1.0.0\n").unwrap();
    std::os::unix::fs::symlink(secret.path().join("values.yaml"), git.path().join("envs/outside/values.yaml")).unwrap();
    git.commit("things a bot must not guess");

    let plan = Plan::new().apps(git.url()).json();

    plan.assert_exit(1).assert_no_file_errors();
    let err = plan.assert_image_error("anchored", "api");
    assert!(err.contains("envs/anchored/deployment.yaml:8:"), "the error names file and line: {err}{plan}");
    assert!(err.contains("anchor"), "{err}{plan}");
    assert_no_changes(&plan, "anchored");

    let img = plan.image("escape", "api");
    let err = img["error"].as_str().unwrap_or_default();
    assert!(err.contains("points outside the repository; refusing to write there"), "{err}{plan}");
    assert!(err.contains("kustomization:../../../elsewhere"), "{err}{plan}");
    assert_no_changes(&plan, "escape");

    for (name, at) in [("to-ci", ".github/workflows/ci.yaml"), ("to-other", "teams/other")] {
        let img = plan.image(name, "api");
        let err = img["error"].as_str().unwrap_or_default();
        assert!(err.contains(&format!("write-back-target points at {at}")) && err.contains("does not deploy"), "{name}: {err}{plan}");
        assert!(err.contains(&format!("apps/{name}.yaml")), "{name}: the error names the Application's file: {err}{plan}");
        assert_no_changes(&plan, name);
    }

    let img = plan.image("linked", "api");
    assert_eq!(img["current"], "1.0.0", "an in-repository link is read{plan}");
    let err = img["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("envs/linked/kustomization.yaml: envs/linked/kustomization.yaml is a symlink; refusing to write through it"),
        "{err}{plan}"
    );
    assert_no_changes(&plan, "linked");

    let err = plan.assert_image_error("outside", "api");
    assert!(
        err.contains("envs/outside/values.yaml: envs/outside/values.yaml is a symlink pointing outside the repository; not following it"),
        "{err}{plan}"
    );
    assert_no_changes(&plan, "outside");
}

#[test]
fn table_output_shows_the_diffs_after_the_table() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    let api = reg.image("team/api");
    let git = GitRepo::new();
    write_app(&git, &app(&git, "api").image_list(&format!("api={api}:^1.0")));
    git.write("envs/api/deployment.yaml", &deployment("api", &format!("{api}:1.0.0")));
    git.commit("api");

    let table = Plan::new().apps(git.path()).table();

    table.assert_exit(0);
    let out = &table.stdout;
    let row = out.lines().position(|l| l.contains("/team/api") && l.contains("1.1.0"));
    let header = out.lines().position(|l| l == "argocd/api:");
    let (Some(row), Some(header)) = (row, header) else { panic!("table row and diff header expected{table}") };
    assert!(row < header, "the diff follows the table{table}");
    let diff: Vec<&str> = out.lines().skip(header + 1).take(5).collect();
    assert_eq!(
        diff,
        [
            format!("# {} envs/api/deployment.yaml", git.url()).as_str(),
            "--- a/envs/api/deployment.yaml",
            "+++ b/envs/api/deployment.yaml",
            "@@ -14,7 +14,7 @@",
            "     spec:",
        ],
        "{table}"
    );
    assert!(out.contains(&format!("\n-          image: {api}:1.0.0\n+          image: {api}:1.1.0\n")), "{table}");
    assert!(!out.contains('\u{1b}'), "no colour when stdout is not a terminal{table}");
}
