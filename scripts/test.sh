#!/usr/bin/env bash
# The test command: installs what the integration tests run for real (the CNCF Distribution
# registry from Debian's docker-registry package, htpasswd, git) when missing, then runs every
# test target. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/install.sh
ensure_debian_packages /usr/bin/docker-registry:docker-registry htpasswd:apache2-utils git:git kubectl:kubernetes-client

# npm packages the tests check against: GitHub's REST description (the fake GitHub's contract)
# and its real webhook payloads. Installed together: `--no-save` prunes what a command omits.
export ARGOCD_IMAGE_PR_NPM="${ARGOCD_IMAGE_PR_NPM:-/var/tmp/argocd-image-pr-npm}"
npm_packages=("@octokit/openapi@23.0.2" "@octokit/webhooks-examples@7.6.1")
npm_missing=()
for spec in "${npm_packages[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    manifest="$ARGOCD_IMAGE_PR_NPM/node_modules/$name/package.json"
    grep -q "\"version\": *\"$version\"" "$manifest" 2>/dev/null || npm_missing+=("$spec")
done
if [ ${#npm_missing[@]} -gt 0 ]; then
    ensure_debian_packages npm:npm
    echo "==> npm install ${npm_missing[*]} (into $ARGOCD_IMAGE_PR_NPM)"
    mkdir -p "$ARGOCD_IMAGE_PR_NPM"
    npm install --prefix "$ARGOCD_IMAGE_PR_NPM" --no-save --no-audit --no-fund "${npm_packages[@]}"
fi
export GITHUB_OPENAPI_SPEC="$ARGOCD_IMAGE_PR_NPM/node_modules/@octokit/openapi/generated/api.github.com.json"

# python-gitlab, the independent client that checks the fake GitLab (tests/gitlab_contract.rs),
# in a venv of its own. A failed install stops the run here: the test is never skipped.
export ARGOCD_IMAGE_PR_PY="${ARGOCD_IMAGE_PR_PY:-/var/tmp/argocd-image-pr-py}"
py_packages=("python-gitlab==8.6.0")
py_missing=()
for spec in "${py_packages[@]}"; do
    name="${spec%==*}"
    version="${spec##*==}"
    "$ARGOCD_IMAGE_PR_PY/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('$name') != '$version')" \
        2>/dev/null || py_missing+=("$spec")
done
if [ ${#py_missing[@]} -gt 0 ]; then
    ensure_debian_packages python3:python3
    if [ ! -x "$ARGOCD_IMAGE_PR_PY/bin/python3" ]; then
        python3 -m venv "$ARGOCD_IMAGE_PR_PY" 2>/dev/null || {
            rm -rf "$ARGOCD_IMAGE_PR_PY"
            install_debian_packages python3-venv
            python3 -m venv "$ARGOCD_IMAGE_PR_PY"
        }
    fi
    echo "==> pip install ${py_missing[*]} (into $ARGOCD_IMAGE_PR_PY)"
    "$ARGOCD_IMAGE_PR_PY/bin/python3" -m pip install --quiet --disable-pip-version-check "${py_packages[@]}"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/argocd-image-pr-target}"
echo "==> cargo test --locked --all-targets (target dir $CARGO_TARGET_DIR)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Lints are part of the tests: a warning fails the run (after the tests, so both are reported).
echo "==> cargo clippy --locked --all-targets -- -D warnings"
set +e
cargo clippy --locked --all-targets -- -D warnings 2>&1 | tail -n 40
clippy_status=${PIPESTATUS[0]}
set -e
if [ "$clippy_status" -ne 0 ] && [ "$status" -eq 0 ]; then
    echo "clippy found warnings (see above)"
    status=$clippy_status
fi
# One closing line for the whole run: the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
