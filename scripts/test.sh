#!/usr/bin/env bash
# The test command: installs what the integration tests run for real (the CNCF Distribution
# registry from Debian's docker-registry package, htpasswd, git) and the contracts they check
# fakes against (GitHub's OpenAPI description and webhook examples, from npm) when missing, then
# runs every test target. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v git >/dev/null 2>&1 || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# GitHub's REST contract and real webhook payloads, for the fake GitHub's checks. Kept outside
# the repository; a package.json pins both so that a later install never prunes the other.
npm_dir="${ARGOCD_IMAGE_PR_NPM:-/var/tmp/argocd-image-pr-npm}"
openapi_version=23.0.2
webhooks_version=7.6.1
installed() { grep -qs "\"version\": \"$2\"" "$npm_dir/node_modules/$1/package.json"; }
if ! installed @octokit/openapi "$openapi_version" || ! installed @octokit/webhooks-examples "$webhooks_version"; then
    echo "==> npm install @octokit/openapi@$openapi_version @octokit/webhooks-examples@$webhooks_version into $npm_dir"
    mkdir -p "$npm_dir"
    printf '{"private": true, "dependencies": {"@octokit/openapi": "%s", "@octokit/webhooks-examples": "%s"}}\n' \
        "$openapi_version" "$webhooks_version" >"$npm_dir/package.json"
    npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error
fi
export ARGOCD_IMAGE_PR_NPM="$npm_dir"
export GITHUB_OPENAPI_SPEC="$npm_dir/node_modules/@octokit/openapi/generated/api.github.com.json"
export GITHUB_WEBHOOKS_EXAMPLES="$npm_dir/node_modules/@octokit/webhooks-examples/api.github.com/index.json"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/argocd-image-pr-target}"
echo "==> cargo test --locked --all-targets (target dir $CARGO_TARGET_DIR)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
