//! The ImageUpdater examples of AIU's documentation, each read both ways: as the resource, and
//! as the annotations the documentation (or the mapping in docs/annotations.md) gives for it.
//! Both must make the bot decide the same: their parsed annotations are compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::domain::DefaultRegistry;

fn updater(yaml: &str) -> ImageUpdater {
    parse("example.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
}

/// What the bot makes of a set of annotations, for comparing two of them.
fn decisions(annotations: &BTreeMap<String, String>) -> String {
    let parsed = crate::annotations::parse(annotations, &Arc::new(DefaultRegistry::default()));
    format!("{parsed:?}")
}

/// `app` (with `labels`, no annotations of its own) configured by `yaml` decides as `want`.
fn same_decisions(yaml: &str, app: &str, labels: &[(&str, &str)], want: &[(&str, &str)]) {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let configured = updater(yaml).configure(app, &labels, &BTreeMap::new()).unwrap_or_else(|| panic!("{app}: no ref matches")).unwrap();
    assert_eq!(decisions(&configured.annotations), decisions(&map(want)), "{app}: {:#?}", configured.annotations);
}

fn not_configured(yaml: &str, app: &str, labels: &[(&str, &str)]) {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(updater(yaml).configure(app, &labels, &BTreeMap::new()).is_none(), "{app} is not configured");
}

const EX02: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-updater
  namespace: production  # CR must be in the same namespace as the Applications
spec:
  applicationRefs:
    - namePattern: "my-app"
      images:
        - alias: "nginx"
          imageName: "nginx:1.20"
"#;

const EX03: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  applicationRefs:
    - namePattern: "my-app"
      images:
        - alias: "nginx"
          imageName: "nginx:1.20"
          commonUpdateSettings:
            updateStrategy: "semver"
            allowTags: "regexp:^[0-9]+\\.[0-9]+$"
"#;

const EX06: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  applicationRefs:
    # This will be used for app-1 (most specific - exact match)
    - namePattern: "app-1"
      images:
        - alias: "test1"
          imageName: "test:1.1.0"

    # This will be used for app-prod-* applications (more specific than app-*)
    - namePattern: "app-prod-*"
      images:
        - alias: "nginx"
          imageName: "nginx:1.20"

    # This will be used for other app-* applications (least specific)
    - namePattern: "app-*"
      images:
        - alias: "redis"
          imageName: "redis:6.2"
"#;

const EX07: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: production-updater
  namespace: argocd
spec:
  commonUpdateSettings:
    updateStrategy: "semver"
    forceUpdate: false
    allowTags: "regexp:^v[0-9]+\\.[0-9]+\\.[0-9]+$"
    ignoreTags: [ "latest", "dev", "test" ]
  writeBackConfig:
    method: "argocd"
  applicationRefs:
    - namePattern: "frontend-*"
      labelSelectors:
        matchLabels:
          environment: "production"
      commonUpdateSettings:
        updateStrategy: "newest-build"
        forceUpdate: true
      writeBackConfig:
        method: "git"
        gitConfig:
          repository: "git@github.com:myorg/frontend-config.git"
          branch: "main"
          writeBackTarget: "helmvalues:/values.yaml"
      images:
        - alias: "frontend"
          imageName: "myregistry/frontend:v1.0"
          commonUpdateSettings:
            allowTags: "regexp:^v[0-9]+\\.[0-9]+\\.[0-9]+-prod$"
        - alias: "nginx"
          imageName: "nginx:1.20"
    - namePattern: "backend"
      images:
        - alias: "api"
          imageName: "myregistry/backend:v2.0"
          commonUpdateSettings:
            updateStrategy: "digest"
        - alias: "database"
          imageName: "postgres:13"
"#;

const EX10: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  writeBackConfig:
    method: "git:secret:git-creds"
    gitConfig:
      repository: "https://github.com/example/example.git"
      branch: "main"
      pullRequest:
        github: {}
  applicationRefs:
    - namePattern: "my-app"
      images:
        - alias: "nginx"
          imageName: "nginx:1.17.10"
      writeBackConfig:
        method: "git:secret:git-creds"
        gitConfig:
          branch: "main"
          writeBackTarget: "helmvalues:/helm/config/values.yaml"
"#;

const EX11: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  commonUpdateSettings:
    updateStrategy: "semver"
    forceUpdate: false
  applicationRefs:
    - namePattern: "my-app-*"
      images:
        - alias: "nginx"
          imageName: "nginx:1.20"
"#;

const EX12: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  commonUpdateSettings:
    updateStrategy: "semver"
  applicationRefs:
    - namePattern: "production-*"
      commonUpdateSettings:
        updateStrategy: "digest"  # Override for production apps
      images:
        - alias: "app"
          imageName: "myapp:latest"
    - namePattern: "staging-*"
      images:
        - alias: "app"
          imageName: "myapp:latest"
          commonUpdateSettings:
            updateStrategy: "newest-build"  # Override for this specific image
"#;

const EX13: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-image-updater
  namespace: argocd
spec:
  writeBackConfig:
    method: "git"
    gitConfig:
      repository: "git@github.com:myorg/myrepo.git"
      branch: "main"
      writeBackTarget: "helmvalues:./values.yaml"
  applicationRefs:
    - namePattern: "my-app-*"
      images:
        - alias: "nginx"
          imageName: "nginx:1.20"
          manifestTargets:
            helm:
              name: "image.repository"
              tag: "image.tag"
"#;

const EX14: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: dev-image-updater
  namespace: argocd
spec:
  commonUpdateSettings:
    updateStrategy: "digest"
  writeBackConfig:
    method: "argocd"
  applicationRefs:
    - namePattern: "dev"
      images:
        - alias: "api"
          imageName: "registry.com/vendor/api:latest"
        - alias: "front"
          imageName: "registry.com/vendor/front:latest"
"#;

const EX15: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: my-pr-image-updater
  namespace: argocd
spec:
  writeBackConfig:
    method: "git:secret:git-creds"
    gitConfig:
      repository: "https://github.com/myorg/myrepo.git"
      branch: "main"
      pullRequest:
        github: {}
  applicationRefs:
    - namePattern: "my-app"
      images:
        - alias: "api"
          imageName: "registry.com/myorg/api:1.x"
          commonUpdateSettings:
            updateStrategy: "semver"
      writeBackConfig:
        method: "git:secret:git-creds"
        gitConfig:
          writeBackTarget: "helmvalues:/helm/values.yaml"
"#;

const EX16: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: prod-image-updater
  namespace: argocd
spec:
  writeBackConfig:
    method: "argocd"
  applicationRefs:
    - namePattern: "prod"
      images:
        - alias: "api"
          imageName: "registry.com/vendor/api:1.x"
          commonUpdateSettings:
            updateStrategy: "semver"
        - alias: "front"
          imageName: "registry.com/vendor/front:1.x"
          commonUpdateSettings:
            updateStrategy: "semver"
"#;

/// One documented example: the Application `app` (with `labels`) that `updater` selects, and
/// the annotations the documentation (or the mapping) gives for it.
pub(crate) struct Example {
    pub updater: &'static str,
    pub app: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    pub annotations: &'static [(&'static str, &'static str)],
}

/// AIU's documented ImageUpdater examples (docs/configuration/*.md, docs/examples), each with
/// its annotations; `engine::tests` plans each both ways.
pub(crate) const EXAMPLES: &[Example] = &[
    Example { updater: EX02, app: "my-app", labels: &[], annotations: &[("image-list", "nginx=nginx:1.20")] },
    Example { updater: EX03, app: "my-app", labels: &[], annotations: &[("image-list", "nginx=nginx:1.20"), ("nginx.update-strategy", "semver"), ("nginx.allow-tags", r"regexp:^[0-9]+\.[0-9]+$")] },
    Example { updater: EX06, app: "app-1", labels: &[], annotations: &[("image-list", "test1=test:1.1.0")] },
    Example { updater: EX06, app: "app-prod-x", labels: &[], annotations: &[("image-list", "nginx=nginx:1.20")] },
    Example { updater: EX06, app: "app-2", labels: &[], annotations: &[("image-list", "redis=redis:6.2")] },
    Example { updater: EX07, app: "frontend-web", labels: &[("environment", "production")], annotations: &[
            ("image-list", "frontend=myregistry/frontend:v1.0,nginx=nginx:1.20"),
            ("update-strategy", "newest-build"),
            ("force-update", "true"),
            ("allow-tags", r"regexp:^v[0-9]+\.[0-9]+\.[0-9]+$"),
            ("ignore-tags", "latest,dev,test"),
            ("frontend.allow-tags", r"regexp:^v[0-9]+\.[0-9]+\.[0-9]+-prod$"),
            ("write-back-method", "git"),
            ("git-repository", "git@github.com:myorg/frontend-config.git"),
            ("git-branch", "main"),
            ("write-back-target", "helmvalues:/values.yaml"),
        ] },
    Example { updater: EX07, app: "backend", labels: &[], annotations: &[
            ("image-list", "api=myregistry/backend:v2.0,database=postgres:13"),
            ("update-strategy", "semver"),
            ("force-update", "false"),
            ("allow-tags", r"regexp:^v[0-9]+\.[0-9]+\.[0-9]+$"),
            ("ignore-tags", "latest,dev,test"),
            ("api.update-strategy", "digest"),
            ("write-back-method", "argocd"),
        ] },
    Example { updater: EX10, app: "my-app", labels: &[], annotations: &[
            ("image-list", "nginx=nginx:1.17.10"),
            ("write-back-method", "git:secret:git-creds"),
            ("git-repository", "https://github.com/example/example.git"),
            ("git-branch", "main"),
            ("write-back-target", "helmvalues:/helm/config/values.yaml"),
        ] },
    Example { updater: EX11, app: "my-app-1", labels: &[], annotations: &[("image-list", "nginx=nginx:1.20"), ("update-strategy", "semver"), ("force-update", "false")] },
    Example { updater: EX12, app: "production-eu", labels: &[], annotations: &[("image-list", "app=myapp:latest"), ("update-strategy", "digest")] },
    Example { updater: EX12, app: "staging-eu", labels: &[], annotations: &[("image-list", "app=myapp:latest"), ("update-strategy", "semver"), ("app.update-strategy", "newest-build")] },
    Example { updater: EX13, app: "my-app-x", labels: &[], annotations: &[
            ("image-list", "nginx=nginx:1.20"),
            ("write-back-method", "git"),
            ("git-repository", "git@github.com:myorg/myrepo.git"),
            ("git-branch", "main"),
            ("write-back-target", "helmvalues:./values.yaml"),
            ("nginx.helm.image-name", "image.repository"),
            ("nginx.helm.image-tag", "image.tag"),
        ] },
    Example { updater: EX14, app: "dev", labels: &[], annotations: &[
            ("image-list", "api=registry.com/vendor/api:latest,front=registry.com/vendor/front:latest"),
            ("update-strategy", "digest"),
            ("write-back-method", "argocd"),
        ] },
    Example { updater: EX15, app: "my-app", labels: &[], annotations: &[
            ("image-list", "api=registry.com/myorg/api:1.x"),
            ("api.update-strategy", "semver"),
            ("write-back-method", "git:secret:git-creds"),
            ("git-repository", "https://github.com/myorg/myrepo.git"),
            ("git-branch", "main"),
            ("write-back-target", "helmvalues:/helm/values.yaml"),
        ] },
    Example { updater: EX16, app: "prod", labels: &[], annotations: &[
            ("image-list", "api=registry.com/vendor/api:1.x,front=registry.com/vendor/front:1.x"),
            ("api.update-strategy", "semver"),
            ("front.update-strategy", "semver"),
            ("write-back-method", "argocd"),
        ] },
];

#[test]
fn each_documented_example_decides_as_its_annotations() {
    for e in EXAMPLES {
        same_decisions(e.updater, e.app, e.labels, e.annotations);
    }
    assert_eq!(updater(EX02).namespace, "production");
    not_configured(EX06, "other", &[]);
    not_configured(EX07, "frontend-web", &[("environment", "staging")]);
}

#[test]
fn use_annotations_takes_only_the_selection_from_the_resource() {
    let yaml = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata: {name: by-label, namespace: argocd}
spec:
  commonUpdateSettings: {updateStrategy: digest}
  applicationRefs:
    - namePattern: "*"
      labelSelectors:
        matchExpressions:
          - {key: team, operator: In, values: [shop, web]}
          - {key: legacy, operator: DoesNotExist}
      useAnnotations: true
    - namePattern: "shop-*"
      images: [{alias: app, imageName: "shop:1.x"}]
"#;
    let u = updater(yaml);
    let own = map(&[("image-list", "api=ghcr.io/acme/api:^1"), ("api.update-strategy", "semver")]);
    let shop: BTreeMap<String, String> = [("team".to_string(), "shop".to_string())].into();
    let got = u.configure("cart", &shop, &own).unwrap().unwrap();
    assert_eq!(got.annotations, own, "its own annotations, the spec's digest strategy not applied");
    assert!(got.by.contains("applicationRefs[0]") && got.by.contains("argocd/by-label"), "{}", got.by);
    // No image-list: the next matching ref.
    let got = u.configure("shop-eu", &shop, &BTreeMap::new()).unwrap().unwrap();
    assert_eq!(got.annotations.get(&format!("{PREFIX}image-list")).map(String::as_str), Some("app=shop:1.x"));
    let legacy: BTreeMap<String, String> = [("team".into(), "web".into()), ("legacy".into(), "yes".into())].into();
    assert!(u.configure("cart", &legacy, &own).is_none(), "DoesNotExist");
    // The Application's own image-updater annotations give way to the resource's.
    let got = u.configure("shop-eu", &BTreeMap::new(), &own).unwrap().unwrap();
    assert!(!got.annotations.contains_key(&format!("{PREFIX}api.update-strategy")), "{:?}", got.annotations);
}

#[test]
fn name_patterns_are_go_filepath_globs() {
    let cases = [
        ("app-*", "app-1", true),
        ("app-*", "app-", true),
        ("app-*", "xapp-1", false),
        ("app-?", "app-12", false),
        ("app-[0-9]", "app-7", true),
        ("app-[^0-9]", "app-7", false),
        ("app-[^0-9]", "app-x", true),
        ("my-helmfile-app.*", "my-helmfile-app.v2", true),
        ("my-helmfile-app.*", "my-helmfile-appv2", false),
        ("{a,b}", "a", false),
        (r"a\*", "a*", true),
        (r"a\*", "ab", false),
        ("*", "anything", true),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(glob_match(pattern, name), Ok(want), "{pattern} ~ {name}");
    }
    for bad in ["[", "a[", "[]", "a\\", "[a-]"] {
        assert_eq!(glob_match(bad, "validation"), Err(()), "{bad}");
    }
}

#[test]
fn malformed_resources_and_what_the_bot_cannot_do_are_errors_naming_them() {
    let base = |spec: &str| {
        format!("apiVersion: argocd-image-updater.argoproj.io/v1alpha1\nkind: ImageUpdater\nmetadata: {{name: u, namespace: argocd}}\nspec:\n{spec}")
    };
    let parse_errors = [
        ("  applicationRefs: []\n", "applicationRefs is empty"),
        ("  applicationRefs:\n    - namePattern: \"[\"\n      images: [{alias: a, imageName: nginx}]\n", "not a valid pattern"),
        ("  applicationRefs:\n    - namePattern: a\n", "either useAnnotations must be true"),
        ("  applicationRefs:\n    - namePattern: a\n      images: [{alias: \"a/b\", imageName: nginx}]\n", "alias \"a/b\""),
        ("  applicationRefs:\n    - namePattern: a\n      images: [{alias: a, imageName: nginx, updateStrategy: semver}]\n", "updateStrategy"),
        ("  namespace: production\n  applicationRefs:\n    - namePattern: a\n      images: [{alias: a, imageName: nginx}]\n", "namespace"),
        (
            "  applicationRefs:\n    - namePattern: a\n      images:\n        - alias: a\n          imageName: nginx\n          manifestTargets: {helm: {}, kustomize: {name: x}}\n",
            "exactly one of helm, kustomize or plugin",
        ),
    ];
    for (spec, want) in parse_errors {
        let err = parse("k8s:argocd/u", &base(spec)).unwrap_err();
        assert!(err.contains("k8s:argocd/u") && err.contains(want), "{spec}: {err}");
    }
    let configure_errors = [
        ("  imagesVerification: {cosignKey: {secretName: k, key: cosign.pub}}\n  applicationRefs:\n    - namePattern: a\n      images: [{alias: a, imageName: nginx}]\n", "imagesVerification"),
        ("  applicationRefs:\n    - namePattern: a\n      images:\n        - alias: a\n          imageName: nginx\n          commonUpdateSettings: {pullSecret: \"pullsecret:other/regcred\"}\n", "namespace other"),
        ("  applicationRefs:\n    - namePattern: a\n      images:\n        - alias: a\n          imageName: nginx\n          manifestTargets: {plugin: {name: IMAGE}}\n", "plugin"),
    ];
    for (spec, want) in configure_errors {
        let u = parse("k8s:argocd/u", &base(spec)).unwrap_or_else(|e| panic!("{e}"));
        let err = u.configure("a", &BTreeMap::new(), &BTreeMap::new()).unwrap().unwrap_err();
        assert!(err.contains("ImageUpdater argocd/u") && err.contains(want), "{spec}: {err}");
    }
}
