# The argocd-image-pr image, for a machine that can pull base images: built on Debian 12 with Rust
# 1.95 (the toolchain the project is built and tested with), run on distroless (glibc, libssl,
# CA certificates; no shell, no package manager) as the non-root user 65532.
#
#   docker build -t argocd-image-pr .
#
# scripts/image.sh builds the same image without pulling anything (from scratch with buildah,
# the binary's own shared libraries copied in) and smoke-tests it; deploy/ runs it with a
# read-only root filesystem and every capability dropped.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin argocd-image-pr \
    && install -m 0755 target/release/argocd-image-pr /argocd-image-pr \
    && strip --strip-debug /argocd-image-pr

# cc: glibc, libgcc and libssl3, which the binary links (libgit2 is built in); zlib comes from
# the build stage (`ldd` lists exactly these).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1
COPY --from=build /argocd-image-pr /usr/local/bin/argocd-image-pr
USER 65532:65532
WORKDIR /tmp
ENV HOME=/tmp SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/argocd-image-pr"]
CMD ["run", "--config", "/etc/argocd-image-pr/config.yaml"]
