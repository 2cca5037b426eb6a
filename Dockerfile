# Build stage: the same `make static` CI runs, giving one statically linked
# binary. The base image is named in full and pinned by digest, so the
# build is the same whatever a tag points at and works with Docker,
# Podman and Buildah alike.
FROM docker.io/library/rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
# The commit built, for the build_info metric (.git is not copied in):
# make docker-build passes it.
ARG GIT_COMMIT=unknown
WORKDIR /src
COPY . .
RUN make static

# Final stage: Ubuntu's official image of the current LTS, named in full,
# with nothing installed: the binary is static (it needs no libc, no
# certificates, no shell) and every operator tool is one of its
# subcommands; Ubuntu's shell and base tools are there for an operator.
# Not pinned by digest: a digest is worth pinning only once checked against
# the registry, which the machines this is built and checked on cannot
# reach; the tag follows Ubuntu's security rebuilds of 24.04.
FROM docker.io/library/ubuntu:24.04
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/package-indexer /usr/local/bin/package-indexer
# The image's own unprivileged user, with the uid and gid 1000 the
# Kubernetes kit runs as (runAsUser, fsGroup): Ubuntu's images hold a login
# user `ubuntu` with those ids, removed for it. It owns the data directory.
RUN userdel ubuntu \
    && rm -rf /home/ubuntu \
    && useradd --uid 1000 --user-group --no-create-home \
        --home-dir /var/lib/package-indexer --shell /usr/sbin/nologin package-indexer \
    && mkdir -p /var/lib/package-indexer \
    && chown package-indexer:package-indexer /var/lib/package-indexer
# Numeric, so that Kubernetes' runAsNonRoot can see it is not root.
USER 1000:1000
EXPOSE 8080 8081
VOLUME ["/var/lib/package-indexer"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["package-indexer", "healthcheck", "--admin-addr", "127.0.0.1:8081"]
ENTRYPOINT ["package-indexer"]
CMD ["--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:8081", "--data-dir", "/var/lib/package-indexer"]
