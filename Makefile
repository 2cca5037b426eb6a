# Everyday commands. `make test` is the README's test command; `.ci/run`
# calls the same `cargo test` plus lint and the packaging checks.

CARGO ?= cargo
TARGET ?= x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/package-indexer
IMAGE ?= package-indexer:latest
# Any client with Docker's command line: make docker-build DOCKER=podman
DOCKER ?= docker

.PHONY: build run test lint stress chaos bench static docker-build docker-run clean

# The server and the tools (harness, bench) of the workspace, in target/release.
build:
	$(CARGO) build --release

run:
	$(CARGO) run --release

test:
	$(CARGO) test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

stress: build
	./stress_test.sh

chaos: build
	./chaos_test.sh

# The standard table of BENCHMARKS.md (a few minutes); the Markdown goes to
# stdout, each run's full report to stderr. E.g. BENCH_ARGS="--duration 2s".
BENCH_ARGS ?=
bench: build
	$(CARGO) run --release -p package-indexer-bench -- --table $(BENCH_ARGS)

# glibc's static runtime: one self-contained file, needing nothing from the image.
# The server only: the tools are not part of the image.
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(TARGET) -p package-indexer --bin package-indexer
	@file $(STATIC_BIN)

docker-build:
	$(DOCKER) build --build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

docker-run:
	$(DOCKER) run --rm -p 8080:8080 -p 8081:8081 -v package-indexer-data:/var/lib/package-indexer $(IMAGE)

clean:
	$(CARGO) clean
