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
RUN make static && mkdir -p /data-skeleton

# Final stage: nothing but the binary and an empty, non-root-owned data
# directory. The binary is static (no libc, no shell, no certificates
# needed) and every operator tool is one of its subcommands, so no base
# image is needed: see README.md, "Container and static binary".
FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/package-indexer /usr/local/bin/package-indexer
COPY --from=build --chown=1000:1000 /data-skeleton /var/lib/package-indexer
ENV PATH=/usr/local/bin
# No user database in the image: a numeric, unprivileged uid and gid.
USER 1000:1000
EXPOSE 8080 8081
VOLUME ["/var/lib/package-indexer"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["package-indexer", "healthcheck", "--admin-addr", "127.0.0.1:8081"]
ENTRYPOINT ["package-indexer"]
CMD ["--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:8081", "--data-dir", "/var/lib/package-indexer"]
