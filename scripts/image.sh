#!/usr/bin/env bash
# Builds the container image and smoke-tests it: the release binary with exactly the shared
# libraries it links, CA certificates, a non-root user (65532) and nothing else (no shell, no
# package manager), assembled from scratch with buildah (Debian's), committed as
# `argocd-image-pr:dev` and written as an OCI layout. The Dockerfile at the root builds the
# same image on a machine that can pull base images (multi-stage, distroless runtime).
#
#   scripts/image.sh [--oci-dir DIR]      (default: /var/tmp/argocd-image-pr-image)
#
# The smoke test checks the image's configuration (user, entrypoint, no shell among the
# files), then runs the binary inside the image's own root filesystem as uid 65532 (chroot):
# `--version`, and `plan` over an Application and its manifests in a git repository made there.
set -euo pipefail
cd "$(dirname "$0")/.."

oci_dir=/var/tmp/argocd-image-pr-image
while [ $# -gt 0 ]; do
    case "$1" in
        --oci-dir) oci_dir="$2"; shift 2 ;;
        *) echo "usage: scripts/image.sh [--oci-dir DIR]" >&2; exit 2 ;;
    esac
done

. scripts/install.sh
ensure_debian_packages buildah:buildah git:git strip:binutils /etc/ssl/certs/ca-certificates.crt:ca-certificates
[ "$(id -u)" -eq 0 ] || { echo "scripts/image.sh: the smoke test runs the image's root filesystem with chroot: run as root" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/argocd-image-pr-target}"
echo "==> cargo build --locked --release --bin argocd-image-pr"
cargo build --locked --release --bin argocd-image-pr
bin="$CARGO_TARGET_DIR/release/argocd-image-pr"

work="$(mktemp -d)"
buildah_storage=(--storage-driver vfs)
ctr=""
cleanup() {
    [ -z "$ctr" ] || buildah "${buildah_storage[@]}" rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> root filesystem"
root="$work/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/var/cache/argocd-image-pr"
install -m 0755 "$bin" "$root/usr/local/bin/argocd-image-pr"
# The release profile keeps line tables for backtraces; the image carries the code only.
strip --strip-debug "$root/usr/local/bin/argocd-image-pr"
# Exactly what the binary links (and the loader), at the paths the loader looks for them.
for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nargocd-image-pr:x:65532:65532:argocd-image-pr:/tmp:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nargocd-image-pr:x:65532:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/var/cache/argocd-image-pr"

echo "==> image"
ctr="$(buildah "${buildah_storage[@]}" from scratch)"
buildah "${buildah_storage[@]}" copy --quiet "$ctr" "$root/" / >/dev/null
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
buildah "${buildah_storage[@]}" config \
    --user 65532:65532 \
    --workingdir /tmp \
    --env HOME=/tmp \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --entrypoint '["/usr/local/bin/argocd-image-pr"]' \
    --cmd '["run", "--config", "/etc/argocd-image-pr/config.yaml"]' \
    --port 8080 \
    --label "org.opencontainers.image.title=argocd-image-pr" \
    --label "org.opencontainers.image.version=$version" \
    "$ctr"
buildah "${buildah_storage[@]}" commit --quiet "$ctr" "argocd-image-pr:dev" >/dev/null
rm -rf "$oci_dir"
buildah "${buildah_storage[@]}" push --quiet "argocd-image-pr:dev" "oci:$oci_dir:dev"
echo "    argocd-image-pr:dev, OCI layout in $oci_dir"

echo "==> smoke test"
user="$(buildah "${buildah_storage[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' argocd-image-pr:dev)"
entrypoint="$(buildah "${buildah_storage[@]}" inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' argocd-image-pr:dev)"
if [ "$user" != "65532:65532" ] || [ "$entrypoint" != "[/usr/local/bin/argocd-image-pr]" ]; then
    echo "image config: user $user, entrypoint $entrypoint" >&2
    exit 1
fi
mnt="$(buildah "${buildah_storage[@]}" mount "$ctr")"
for absent in bin/sh bin/bash usr/bin/apt; do
    if [ -e "$mnt/$absent" ]; then echo "the image has /$absent" >&2; exit 1; fi
done
files="$(cd "$mnt" && find . -type f | wc -l)"
size="$(du -sh "$mnt" | cut -f1)"
# The binary, in the image's own root, as its user: it starts, finds its libraries and CAs, and
# plans an Application from a git repository (file://) with no registry reachable.
chroot --userspec=65532:65532 "$mnt" /usr/local/bin/argocd-image-pr --version
repo="$mnt/tmp/smoke"
git init -q -b main "$repo"
mkdir -p "$repo/apps" "$repo/envs/api"
cat > "$repo/envs/api/kustomization.yaml" <<'EOF'
resources: [deployment.yaml]
images:
  - name: 127.0.0.1:9/team/api
    newTag: 1.0.0
EOF
cat > "$repo/envs/api/deployment.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec: {template: {spec: {containers: [{name: api, image: 127.0.0.1:9/team/api}]}}}
EOF
cat > "$repo/apps/api.yaml" <<'EOF'
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: api
  namespace: argocd
  annotations:
    argocd-image-updater.argoproj.io/image-list: api=127.0.0.1:9/team/api:^1.0
spec:
  source: {repoURL: file:///tmp/smoke, targetRevision: main, path: envs/api}
  destination: {namespace: api}
EOF
git -C "$repo" -c user.name=smoke -c user.email=smoke@example.invalid add -A
git -C "$repo" -c user.name=smoke -c user.email=smoke@example.invalid commit -q -m smoke
chown -R 65532:65532 "$repo"
set +e
out="$(HOME=/tmp chroot --userspec=65532:65532 "$mnt" /usr/local/bin/argocd-image-pr plan --apps /tmp/smoke --output json --connect-timeout 2s 2>&1)"
status=$?
set -e
rm -rf "$repo"
buildah "${buildah_storage[@]}" umount "$ctr" >/dev/null
# The registry at 127.0.0.1:9 does not answer: exit 1, with the current version read from git
# and the error naming the registry (proof that git, YAML and the network stack work).
case "$status:$out" in
    1:*'"current": "1.0.0"'*'registry 127.0.0.1:9'*) ;;
    *) echo "plan inside the image: exit $status: $out" >&2; exit 1 ;;
esac
echo "    runs as 65532 with no shell; $files files, $size; plan inside the image read git and named the unreachable registry"
