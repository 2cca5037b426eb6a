# Build stage: the same `make static` CI runs, giving one statically
# linked binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN make static && mkdir -p /data-skeleton

# Final stage: plain Ubuntu with nothing added but the binary and an empty,
# non-root-owned data directory.
FROM ubuntu:24.04
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/package-indexer /usr/local/bin/package-indexer
COPY --from=build --chown=1000:1000 /data-skeleton /var/lib/package-indexer
# uid 1000 is the image's unprivileged `ubuntu` user.
USER 1000:1000
EXPOSE 8080 8081
VOLUME ["/var/lib/package-indexer"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["package-indexer", "healthcheck", "--admin-addr", "127.0.0.1:8081"]
ENTRYPOINT ["package-indexer"]
CMD ["--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:8081", "--data-dir", "/var/lib/package-indexer"]
