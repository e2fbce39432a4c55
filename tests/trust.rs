//! Issue 9, the layouts and annotations people use most, end to end: the real binary, a real
//! `docker-registry` on loopback, real git. Each test is one point of the issue and shows what a
//! reviewer would see in the proposed change.

mod support;

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::gitops::{App, GitRepo};
use support::registry::{Auth, TestRegistry};

/// `(file, diff)` of every change the plan proposes for `app`.
fn changes(plan: &PlanOutput, app: &str) -> Vec<(String, String)> {
    let list = plan.app(app)["changes"].as_array().cloned().unwrap_or_default();
    list.iter().map(|c| (c["file"].as_str().unwrap_or("").to_string(), c["diff"].as_str().unwrap_or("").to_string())).collect()
}

/// A Deployment whose container image is written without a tag.
fn untagged_deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      \
         containers:\n      - name: {name}\n        image: {image}\n"
    )
}

/// Point 1: a Kustomize source whose base Deployment names the image without a tag. The version
/// goes only where Kustomize overrides images; the Deployment is never touched.
#[test]
fn kustomize_sources_are_edited_only_where_kustomize_overrides_images() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/app", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/app");
    let git = GitRepo::new();
    let url = git.url();
    let write_app = |app: &App| git.write(&format!("apps/{}.yaml", app.name), &app.to_yaml());

    // No `images:` list yet.
    git.write("envs/no-list/kustomization.yaml", "resources:\n- deployment.yaml\n");
    git.write("envs/no-list/deployment.yaml", &untagged_deployment("no-list", &image));
    write_app(&App::new("no-list", &url, "envs/no-list").image_list(&format!("app={image}")));
    // A list that lacks this image.
    git.write("envs/other-entry/kustomization.yaml", "resources:\n- deployment.yaml\nimages:\n- name: redis\n  newTag: \"7.2\"\n");
    git.write("envs/other-entry/deployment.yaml", &untagged_deployment("other-entry", &image));
    write_app(&App::new("other-entry", &url, "envs/other-entry").image_list(&format!("app={image}")));
    // The Application's own kustomize.images holds the version.
    git.write("envs/app-images/kustomization.yaml", "resources:\n- deployment.yaml\n");
    git.write("envs/app-images/deployment.yaml", &untagged_deployment("app-images", &image));
    let mut with_images = App::new("app-images", &url, "envs/app-images").image_list(&format!("app={image}"));
    with_images.source_extra = format!("    kustomize:\n      images:\n      - {image}:1.0.0\n");
    write_app(&with_images);
    // .argocd-source-<app>.yaml holds the version.
    git.write("envs/override/kustomization.yaml", "resources:\n- deployment.yaml\n");
    git.write("envs/override/deployment.yaml", &untagged_deployment("override", &image));
    git.write("envs/override/.argocd-source-override.yaml", &format!("kustomize:\n  images:\n  - {image}:1.0.0\n"));
    write_app(&App::new("override", &url, "envs/override").image_list(&format!("app={image}")));
    git.commit("kustomize sources with an untagged base image");

    let plan = Plan::new().apps(&url).json();

    plan.assert_exit(0).assert_no_file_errors();
    let entry = format!("+images:\n+- name: {image}\n+  newTag: 1.1.0\n");
    let got = changes(&plan, "no-list");
    assert_eq!(got.len(), 1, "{got:#?}{plan}");
    assert_eq!(got[0].0, "envs/no-list/kustomization.yaml");
    assert!(got[0].1.ends_with(&entry), "an images entry is added:\n{}", got[0].1);
    assert_eq!(plan.image("no-list", "app")["current"], Value::Null, "an untagged image is no version");

    let got = changes(&plan, "other-entry");
    assert_eq!(got.len(), 1, "{got:#?}{plan}");
    assert_eq!(got[0].0, "envs/other-entry/kustomization.yaml");
    assert!(got[0].1.contains(&format!("+- name: {image}\n+  newTag: 1.1.0\n")), "{}", got[0].1);

    let got = changes(&plan, "app-images");
    assert_eq!(got.len(), 1, "only the Application's kustomize.images: {got:#?}{plan}");
    assert_eq!(got[0].0, "apps/app-images.yaml");
    assert!(got[0].1.contains(&format!("-      - {image}:1.0.0\n+      - {image}:1.1.0\n")), "{}", got[0].1);
    plan.assert_proposes("app-images", "app", "1.0.0", "1.1.0");

    let got = changes(&plan, "override");
    assert_eq!(got.len(), 1, "only the override file: {got:#?}{plan}");
    assert_eq!(got[0].0, "envs/override/.argocd-source-override.yaml");

    for app in ["no-list", "other-entry", "app-images", "override"] {
        assert!(
            changes(&plan, app).iter().all(|(f, _)| !f.ends_with("deployment.yaml")),
            "{app}: the rendered Deployment is never edited{plan}"
        );
    }
}

/// Point 2: the chart's values.yaml names the repository without a tag; the Application, kept in
/// the scanned repository, sets `helm.valuesObject.image.tag`.
#[test]
fn a_tag_in_the_applications_values_object_is_read_and_written_there() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/web", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/web");
    let git = GitRepo::new();
    let url = git.url();
    git.write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n");
    git.write("charts/web/values.yaml", &format!("image:\n  repository: {image}\n  pullPolicy: IfNotPresent\n"));
    let mut app = App::new("web", &url, "charts/web")
        .image_list(&format!("web={image}"))
        .annotate("web.helm.image-name", "image.repository")
        .annotate("web.helm.image-tag", "image.tag");
    app.source_extra = "    helm:\n      valuesObject:\n        replicaCount: 2\n        image:\n          tag: \"1.0.0\"  # release\n".into();
    git.write("apps/web.yaml", &app.to_yaml());
    git.commit("helm chart with the tag in valuesObject");

    let plan = Plan::new().apps(&url).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("web", "web", "1.0.0", "1.1.0");
    let got = changes(&plan, "web");
    assert_eq!(got.len(), 1, "{got:#?}{plan}");
    assert_eq!(got[0].0, "apps/web.yaml");
    assert!(got[0].1.contains("-          tag: \"1.0.0\"  # release\n+          tag: \"1.1.0\"  # release\n"), "byte-preserving:\n{}", got[0].1);
}

/// Point 3: Argo CD's documented multi-source pattern, a chart from a Helm repository with its
/// values file in git behind `$values/`. The chart repository is never contacted.
#[test]
fn a_chart_from_a_helm_repository_gets_its_values_file_in_git_edited() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/web", &["1.0.0", "1.1.0"]);
    let image = reg.image("team/web");
    let git = GitRepo::new();
    let url = git.url();
    git.write("apps/x/values.yaml", &format!("# x in prod\nimage:\n  name: {image}\n  tag: 1.0.0\n"));
    // A chart repository that would notice any contact: a closed loopback port.
    let charts = support::registry::ClosedPort::new();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let app = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: x\n  namespace: argocd\n  annotations:\n    \
         argocd-image-updater.argoproj.io/image-list: {}\nspec:\n  project: default\n  sources:\n  - repoURL: {}\n    \
         chart: web\n    targetRevision: 1.2.3\n    helm:\n      valueFiles:\n      - $values/apps/x/values.yaml\n  \
         - repoURL: {}\n    targetRevision: HEAD\n    ref: values\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: x\n",
        q(&format!("web={image}")),
        q(&format!("https://{}/charts", charts.host())),
        q(&url)
    );
    git.write("apps/x.yaml", &app);
    git.commit("multi-source chart from a helm repository");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(0).assert_no_file_errors();
    plan.assert_proposes("x", "web", "1.0.0", "1.1.0");
    let got = changes(&plan, "x");
    assert_eq!(got.len(), 1, "{got:#?}{plan}");
    assert_eq!(got[0].0, "apps/x/values.yaml");
    assert!(got[0].1.contains("-  tag: 1.0.0\n+  tag: 1.1.0\n"), "{}", got[0].1);
}

/// Point 5: everything before the first `=` is the alias, as in argocd-image-updater; a
/// constraint cut in two by the list's commas is an error that says how to write it.
#[test]
fn image_list_aliases_and_constraints_cut_by_a_comma() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("org/app", &["0.1.0", "0.1.1", "0.2.0"]);
    reg.push_tags("team/web", &["1.20.0", "1.21.0", "2.0.0"]);
    let (app_image, web) = (reg.image("org/app"), reg.image("team/web"));
    let git = GitRepo::new();
    let url = git.url();
    let alias = format!("{}/org/orig", reg.host());
    git.write("envs/aliased/kustomization.yaml", &format!("images:\n- name: {app_image}\n  newTag: 0.1.0\n"));
    let aliased = App::new("aliased", &url, "envs/aliased")
        .image_list(&format!("{alias}={app_image}:~0.1"))
        .annotate(&format!("{}.update-strategy", alias.replace('/', "_")), "semver");
    git.write("apps/aliased.yaml", &aliased.to_yaml());
    git.write("envs/cut/kustomization.yaml", &format!("images:\n- name: {web}\n  newTag: 1.20.0\n"));
    git.write("apps/cut.yaml", &App::new("cut", &url, "envs/cut").image_list(&format!("web={web}:>=1.20, <2.0")).to_yaml());
    git.commit("image-list forms");

    let plan = Plan::new().apps(git.path()).json();

    plan.assert_exit(1);
    plan.assert_proposes("aliased", &alias, "0.1.0", "0.1.1");
    let err = plan.assert_image_error("cut", "web");
    assert!(err.contains("comma-separated") && err.contains("`>=1.20 <2.0`"), "{err}{plan}");
    assert!(changes(&plan, "cut").is_empty(), "2.0.0 is never proposed under half a constraint{plan}");
}

/// A bare repository people push to (`origin`), with a work tree to write in.
struct Origin {
    git: GitRepo,
    bare: tempfile::TempDir,
}

impl Origin {
    fn new() -> Origin {
        let git = GitRepo::new();
        let bare = tempfile::Builder::new().prefix("aipr-origin-").tempdir().unwrap();
        git.git(&["init", "-q", "--bare", "-b", "main", &bare.path().display().to_string()]);
        git.git(&["remote", "add", "origin", &bare.path().display().to_string()]);
        Origin { git, bare }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.path().display())
    }

    fn push(&self, message: &str) {
        self.git.commit(message);
        self.git.git(&["push", "-q", "origin", "main"]);
    }
}

/// Every pull-request record of the local forge: (repository directory, record).
fn local_prs(forge: &std::path::Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for repo in std::fs::read_dir(forge).unwrap().flatten() {
        let Ok(pulls) = std::fs::read_dir(repo.path().join("pulls")) else { continue };
        for f in pulls.flatten().filter(|f| f.path().extension().is_some_and(|x| x == "json")) {
            let record: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            out.push((repo.file_name().to_string_lossy().into_owned(), record));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Point 6: a multi-source Application whose kustomization is in one repository and whose Helm
/// values are in another gets one PR in each, on the same branch name, linked to each other;
/// a hold set through one of them applies to its image only.
#[test]
fn an_update_spanning_two_repositories_gets_one_linked_pr_in_each() {
    let reg = TestRegistry::start(Auth::Anonymous);
    reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    reg.push_tags("team/web", &["2.0.0", "2.1.0"]);
    let (api, web) = (reg.image("team/api"), reg.image("team/web"));
    let (a, b) = (Origin::new(), Origin::new());
    a.git.write("envs/x/kustomization.yaml", &format!("resources:\n- deployment.yaml\nimages:\n- name: {api}\n  newTag: 1.0.0\n"));
    a.git.write("envs/x/deployment.yaml", &untagged_deployment("x", &api));
    a.push("api's kustomization");
    b.git.write("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n");
    b.git.write("chart/values.yaml", &format!("image:\n  name: {web}\n  tag: 2.0.0\n"));
    b.push("web's chart");
    let apps = tempfile::tempdir().unwrap();
    let q = |s: &str| serde_json::to_string(s).unwrap();
    std::fs::write(
        apps.path().join("x.yaml"),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: x\n  namespace: argocd\n  annotations:\n    \
             argocd-image-updater.argoproj.io/image-list: {}\nspec:\n  project: default\n  sources:\n  - repoURL: {}\n    \
             targetRevision: main\n    path: envs/x\n  - repoURL: {}\n    targetRevision: main\n    path: chart\n    helm:\n      \
             valueFiles: [values.yaml]\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: x\n",
            q(&format!("api={api}:^1.0, web={web}:^2.0")),
            q(&a.url()),
            q(&b.url())
        ),
    )
    .unwrap();
    let forge = tempfile::tempdir().unwrap();
    let run = || {
        Plan::command(&["run", "--once", "--forge", "local"]).arg("--local-forge-dir").arg(forge.path()).apps(apps.path()).json()
    };

    let out = run();
    out.assert_exit(0);
    let prs = local_prs(forge.path());
    assert_eq!(prs.len(), 2, "one PR per repository: {prs:#?}{out}");
    let branch = "argocd-image-pr/argocd/x";
    for (_, pr) in &prs {
        assert_eq!(pr["head"], branch, "the same stable branch name in each repository");
        assert_eq!(pr["state"], "open");
    }
    let (in_a, in_b) = if prs[0].1["body"].as_str().unwrap().contains("`api`") { (&prs[0].1, &prs[1].1) } else { (&prs[1].1, &prs[0].1) };
    let (body_a, body_b) = (in_a["body"].as_str().unwrap(), in_b["body"].as_str().unwrap());
    assert!(body_a.contains("1.0.0") && body_a.contains("1.1.0") && !body_a.contains("`web`"), "A carries api only:\n{body_a}");
    assert!(body_b.contains("2.1.0") && !body_b.contains("`api`"), "B carries web only:\n{body_b}");
    assert!(body_a.contains("One update, 2 repositories") && body_b.contains("One update, 2 repositories"), "{body_a}\n{body_b}");
    assert!(body_a.contains("(branch `argocd-image-pr/argocd/x`)"), "before the other PR exists, its branch is named:\n{body_a}");
    for (o, file) in [(&a, "envs/x/kustomization.yaml"), (&b, "chart/values.yaml")] {
        let diff = o.git.git(&["-C", &o.bare.path().display().to_string(), "diff", "--stat", "main", branch]);
        assert!(diff.contains(file) && diff.contains("1 file changed"), "{diff}");
    }

    // The next run links the PRs that now exist, then nothing changes.
    run().assert_exit(0);
    let linked = local_prs(forge.path());
    // (The local forge's `local://` links render as `#`: only http(s) links are shown.)
    assert!(linked.iter().all(|(_, p)| p["body"].as_str().unwrap().contains("merge it together with [the one in")), "{linked:#?}");
    let before = local_prs(forge.path());
    let out = run();
    out.assert_exit(0);
    assert_eq!(local_prs(forge.path()), before, "nothing changes{out}");

    // Closing A's PR ignores api 1.1.0 only; web's PR in B stays as it is.
    let number = in_a["number"].as_u64().unwrap().to_string();
    let close = std::process::Command::new(support::cli::BIN)
        .args(["local", "--local-forge-dir"])
        .arg(forge.path())
        .args(["--repo", &a.url(), "close", &number])
        .output()
        .unwrap();
    assert!(close.status.success(), "{}", String::from_utf8_lossy(&close.stderr));
    let out = run();
    out.assert_exit(0);
    let after = local_prs(forge.path());
    assert_eq!(after.len(), 2, "no new PR: {after:#?}{out}");
    let open: Vec<&Value> = after.iter().map(|(_, p)| p).filter(|p| p["state"] == "open").collect();
    assert_eq!(open.len(), 1, "{after:#?}");
    assert!(open[0]["body"].as_str().unwrap().contains("2.1.0"), "web is still proposed in B");
}
