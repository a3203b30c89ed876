# syntax=docker/dockerfile:1
# One image for every spacefabric role: spacefabric-controller, spacefabric-node and
# spacefabric-bench, plus the shipped link profiles under /etc/spacefabric/profiles.
# The link emulation runs inside the node process, so the image needs no tc, no iproute2 and
# no capabilities: it runs as an unprivileged numeric user (10001), which Kubernetes'
# runAsNonRoot can verify without resolving a user name.
#
#   docker build --build-arg SPACEFABRIC_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t spacefabric:dev .
#   docker run --rm spacefabric:dev spacefabric-controller profile check /etc/spacefabric/profiles/*.toml
#
# See docs/KUBERNETES.md for loading the image into kind or minikube.

# Base images are pinned by multi-arch index digest, so a rebuild of one commit uses the same
# compiler and the same runtime libraries; a tag alone moves. These two digests were NOT
# resolved here (this repository's build machines cannot reach a container registry): they are
# the index digests of rust:1-bookworm (Rust 1.98.1) and debian:bookworm-slim that a public
# Dockerfile recorded as resolved on 2026-09-20. Before relying on them, and to refresh them,
# resolve the tags yourself and update the digest and the date together:
#   docker buildx imagetools inspect rust:1-bookworm
#   docker buildx imagetools inspect debian:bookworm-slim

# ---- builder: the Rust workspace, `dist` profile (release, stripped), the committed Cargo.lock ----
FROM rust:1-bookworm@sha256:93ce27a88655056a51dbdd8f5f2d7ddc071c7b0070fb288a37b5a285fc83971e AS builder
WORKDIR /src
# The build context has no .git (.dockerignore): pass the commit for `--version` and the
# spacefabric_build_info metric, or they say "unknown":
#   docker build --build-arg SPACEFABRIC_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t spacefabric:dev .
ARG SPACEFABRIC_GIT_COMMIT=
ENV SPACEFABRIC_GIT_COMMIT=${SPACEFABRIC_GIT_COMMIT}
COPY . .
# Cache mounts keep the crate registry and target/ between builds (BuildKit); the binaries are
# copied out of the cached target/ because cache mounts are not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked \
        --bin spacefabric-controller --bin spacefabric-node --bin spacefabric-bench \
 && install -D -m 0755 -t /out/bin \
        target/dist/spacefabric-controller \
        target/dist/spacefabric-node \
        target/dist/spacefabric-bench

# ---- runtime: glibc matches the builder (both Debian bookworm) ----
FROM debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251 AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 spacefabric \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/spacefabric --shell /usr/sbin/nologin spacefabric \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/spacefabric
COPY --from=builder /out/bin/ /usr/local/bin/
COPY netem-profiles/profiles/ /etc/spacefabric/profiles/
# Tools that take a shipped profile by name (`spacefabric-bench allreduce --profile earth-moon`)
# look in the source checkout's netem-profiles/profiles, a path fixed at build time (/src/...):
# point it at the copy above.
RUN mkdir -p /src/netem-profiles \
 && ln -s /etc/spacefabric/profiles /src/netem-profiles/profiles
USER 10001:10001
WORKDIR /var/lib/spacefabric
# controller gRPC, controller metrics, node QUIC, node metrics
EXPOSE 7400/tcp 9400/tcp 7500/udp 9500/tcp
ENV RUST_LOG=info
# No ENTRYPOINT: the pod (or `docker run IMAGE <binary> ...`) names the binary to run.
CMD ["spacefabric-controller", "--help"]
