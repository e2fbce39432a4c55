#!/usr/bin/env bash
# The demo: a throwaway local registry, a few image tags, a local GitOps repository with three
# Argo CD Applications (Kustomize, Helm values, plain Deployment), then `argocd-image-pr plan`
# on it, as a table and as JSON; then `run --once --forge local` opens pull requests, a newer
# tag arrives, and the same pull request is updated in place; it is merged, then reverted: the
# bot notices the rollback once, does not propose the reverted version again, and proposes the
# next newer one; a `/pin` comment holds it. Nothing outside a temp dir is touched; the registry
# is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -t 1 ]; then
    heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    heading() { printf '\n== %s\n' "$*"; }
fi

. scripts/install.sh
ensure_debian_packages /usr/bin/docker-registry:docker-registry git:git

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/argocd-image-pr-target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/argocd-image-pr-demo.XXXXXX")"
registry_pid=""
cleanup() {
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Runs a command quietly; shows what it printed only when it fails.
quietly() {
    if ! "$@" >"$work/out.log" 2>&1; then
        cat "$work/out.log" >&2
        echo "failed: $*" >&2
        exit 1
    fi
}

heading "Building argocd-image-pr"
quietly cargo build --locked --bin argocd-image-pr --example seed
bin="$CARGO_TARGET_DIR/debug/argocd-image-pr"
echo "  $bin"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

heading "Starting a throwaway registry"
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    listening "$port" && continue
    cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YAML
    /usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 200); do
        listening "$port" && break
        kill -0 "$registry_pid" 2>/dev/null || break
        sleep 0.05
    done
    listening "$port" && break
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
done
if [ -z "$registry_pid" ]; then
    echo "docker-registry did not start:" >&2
    cat "$work/registry.log" >&2
    exit 1
fi
registry="127.0.0.1:$port"
echo "  registry at http://$registry (pid $registry_pid, storage in $work/registry)"

heading "Pushing images"
seed() {
    quietly cargo run --locked --quiet --example seed -- "$registry" "$@"
    grep pushed "$work/out.log"
}
seed demo/api 1.0.0 1.1.0 1.2.0 2.0.0-rc.1
seed demo/web build-101 build-102 latest build-103
seed demo/worker 3.0.0 3.1.0

heading "Creating a GitOps repository"
repo="$work/gitops"
mkdir -p "$repo/apps" "$repo/envs/api" "$repo/charts/web/templates" "$repo/envs/worker"
repo_url="file://$repo"
prefix="argocd-image-updater.argoproj.io"

application() { # name path annotations...
    local name="$1" path="$2"
    shift 2
    printf 'apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: %s\n  namespace: argocd\n  annotations:\n' "$name"
    for a in "$@"; do printf '    %s/%s\n' "$prefix" "$a"; done
    printf 'spec:\n  project: default\n  source:\n    repoURL: %s\n    targetRevision: main\n    path: %s\n' "$repo_url" "$path"
    printf '  destination:\n    server: https://kubernetes.default.svc\n    namespace: %s\n' "$name"
}

# Kustomize: follow 1.x releases (2.0.0-rc.1 is a pre-release of another major: not proposed).
application api envs/api \
    "image-list: \"api=$registry/demo/api:^1.0\"" >"$repo/apps/api.yaml"
cat >"$repo/envs/api/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
images:
  - name: $registry/demo/api
    newTag: 1.0.0
YAML
cat >"$repo/envs/api/deployment.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: $registry/demo/api
YAML

# Helm values: deploy the newest build, never the moving `latest` tag.
application web charts/web \
    "image-list: \"web=$registry/demo/web\"" \
    "web.update-strategy: newest-build" \
    "web.ignore-tags: latest" \
    "web.helm.image-name: image.repository" \
    "web.helm.image-tag: image.tag" >"$repo/apps/web.yaml"
printf 'apiVersion: v2\nname: web\nversion: 0.1.0\n' >"$repo/charts/web/Chart.yaml"
cat >"$repo/charts/web/values.yaml" <<YAML
# Values for the web chart
replicaCount: 2
image:
  repository: $registry/demo/web
  tag: build-101
YAML

# Plain Deployment: patch releases of 3.1 only; it already runs the newest one.
application worker envs/worker \
    "image-list: \"worker=$registry/demo/worker:~3.1\"" >"$repo/apps/worker.yaml"
cat >"$repo/envs/worker/deployment.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  selector:
    matchLabels: {app: worker}
  template:
    metadata:
      labels: {app: worker}
    spec:
      containers:
        - name: worker
          image: $registry/demo/worker:3.1.0
YAML

git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=demo -c user.email=demo@example.com -c commit.gpgsign=false \
    commit -q -m "Three applications"
echo "  $repo_url: $(cd "$repo" && find apps envs charts -type f | sort | tr '\n' ' ')"

status=0
heading "argocd-image-pr plan --apps $repo_url"
"$bin" plan --apps "$repo_url" --cache-dir "$work/cache" --output table || status=$?

heading "argocd-image-pr plan --apps $repo_url --output json"
"$bin" plan --apps "$repo_url" --cache-dir "$work/cache" --output json || status=$?

if [ "$status" -ne 0 ]; then
    heading "plan exited with status $status"
    exit "$status"
fi

# Proposing: the local forge pushes branches to the repository and keeps PRs as JSON files.
prs="$work/prs"
run_once() {
    "$bin" run --once --forge local --local-forge-dir "$prs" --apps "$repo_url" \
        --cache-dir "$work/cache" --output table || status=$?
}
local_forge() { "$bin" local --local-forge-dir "$prs" --repo "$repo_url" "$@"; }

heading "argocd-image-pr run --once --forge local --local-forge-dir $prs"
run_once

heading "argocd-image-pr local show 1   (the pull request for api: title, body, diff)"
local_forge show 1

heading "Running again right away: nothing to do, nothing written"
run_once

heading "Pushing demo/api:1.3.0, then run --once again"
seed demo/api 1.3.0
run_once

heading "argocd-image-pr local show 1   (the same pull request, updated in place)"
local_forge show 1

heading "argocd-image-pr local list"
local_forge list

# Just the conversation of a pull request (its comments, without body and diff).
conversation() { local_forge show "$1" | sed -n '/^--- comment/,/^diff --git/p' | grep -v '^diff --git' || true; }

heading "Merging #1 (api 1.3.0), then reverting it: 1.3.0 is bad"
local_forge merge 1
local_forge revert 1
echo "  main runs api $(grep newTag "$repo/envs/api/kustomization.yaml")"

heading "run --once: the bot notices the rollback and does not propose 1.3.0 again"
run_once
heading "The notice on #1 (said once)"
conversation 1

heading "Pushing demo/api:1.3.1, then run --once: strictly newer, so it is proposed"
seed demo/api 1.3.1
run_once
api_pr="$(local_forge list | grep 'argocd-image-pr/argocd/api' | grep '\[open\]' | head -1 | sed 's/^#\([0-9]*\).*/\1/')"

heading "Commenting /pin on #$api_pr (as alice), then run --once"
# The bot marks a PR as seen two seconds past its own last write to it (docs/lifecycle.md).
sleep 2
local_forge comment "$api_pr" $'1.3.1 needs a schema migration first.\n\n/pin' --as alice
run_once
heading "#$api_pr: closed, with the acknowledgement"
local_forge list
conversation "$api_pr"

heading "argocd-image-pr status   (what is held, by whom, when, with a link)"
"$bin" status --forge local --local-forge-dir "$prs" --apps "$repo_url" --cache-dir "$work/cache" || status=$?

if [ "$status" -ne 0 ]; then
    heading "exited with status $status"
fi
exit "$status"
