#!/usr/bin/env bash
# Stress test: one package-indexer server, the harness against it at
# concurrency 1, 10, 25, 50 and 100 with three seeds each, on a generated
# graph of the Homebrew list's size (--count 3370) and on the Homebrew list
# the harness embeds (its default). Prints a summary with timings and the
# server's peak memory; exits 1 if any run failed or the server died.
#
# Environment:
#   SERVER_BIN    server binary   [default: release build of this repo]
#   HARNESS_BIN   harness binary with the same flags (--host --port
#                 --concurrency --seed, and --count for the generated
#                 runs) [default: release build]
#   STRESS_SEEDS  seeds to use    [default: three from the clock, printed]
#   HARNESS_TIMEOUT  seconds one harness run may take [default: 300]
#   SERVER_PORT   port the server listens on, on 127.0.0.1 [default: 0,
#                 a free one, printed]
#
# The helpers above `stress_main` are shared with chaos_test.sh, which
# sources this file (sourcing defines them and runs nothing).

set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work_dir=""
server_pid=""
server_port=""
server_log=""
keep_work_dir=0

say() { printf '%s\n' "$*"; }
die() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# Builds the release binaries unless both are given; sets SERVER_BIN and
# HARNESS_BIN.
resolve_binaries() {
    local release="${CARGO_TARGET_DIR:-$repo_root/target}/release"
    if [[ -z ${SERVER_BIN:-} || -z ${HARNESS_BIN:-} ]]; then
        say "building release binaries..."
        (cd "$repo_root" && cargo build --release --quiet) || die "cargo build failed"
    fi
    SERVER_BIN=${SERVER_BIN:-$release/package-indexer}
    HARNESS_BIN=${HARNESS_BIN:-$release/package-indexer-harness}
    [[ -x $SERVER_BIN ]] || die "server binary $SERVER_BIN is not executable"
    [[ -x $HARNESS_BIN ]] || die "harness binary $HARNESS_BIN is not executable"
}

make_work_dir() {
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/package-indexer-test.XXXXXX")
}

# The port SERVER_PORT asks for (0, the default, for any free one); dies
# naming the variable when it is not a port.
requested_port() {
    local port=${SERVER_PORT:-0}
    if [[ ! $port =~ ^[0-9]{1,5}$ ]] || ((10#$port > 65535)); then
        die "SERVER_PORT=$port is not a port number (0 to 65535; 0 for any free one)"
    fi
    printf '%s' "$((10#$port))"
}

# Starts the server on 127.0.0.1 (port $1, default 0: any free one) and waits
# for its startup line; sets server_pid, server_port and server_log.
start_server() {
    local port=${1:-0}
    server_log="$work_dir/server.$(date +%s%N).log"
    "$SERVER_BIN" --addr "127.0.0.1:$port" --admin-addr off --shutdown-timeout 5s \
        2>"$server_log" &
    server_pid=$!
    local address=""
    for _ in $(seq 100); do
        address=$(grep -o -m 1 ' addr=[^ ]*' "$server_log" | head -n 1 || true)
        [[ -n $address ]] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            server_pid=""
            server_failed "exited during startup"
            return 1
        fi
        sleep 0.05
    done
    if [[ -z $address ]]; then
        server_failed "printed no ' addr=' startup line within 5s"
        return 1
    fi
    server_port=${address##*:}
    say "server pid $server_pid listening on 127.0.0.1:$server_port"
}

# Prints why the server is in trouble and the end of its log.
server_failed() {
    keep_work_dir=1
    say "SERVER FAILURE: $1 (log: $server_log)"
    tail -n 20 "$server_log" 2>/dev/null | sed 's/^/  server: /' || true
}

server_alive() {
    [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null
}

# The server's peak resident memory (VmHWM), e.g. "12345 kB".
server_peak_rss() {
    awk '/^VmHWM:/ { print $2, $3 }' "/proc/$server_pid/status" 2>/dev/null || echo unknown
}

# Stops the server with SIGTERM and checks it exits 0 within 15s
# (docs/lifecycle.md#graceful-stop); SIGKILL after that. Returns non-zero
# when the stop was not clean.
stop_server() {
    [[ -n $server_pid ]] || return 0
    local pid=$server_pid status=0
    server_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        server_failed "did not exit within 15s of SIGTERM"
        return 1
    fi
    wait "$pid" 2>/dev/null || status=$?
    if ((status != 0)); then
        server_failed "exited with status $status after SIGTERM (a graceful stop exits 0: docs/lifecycle.md)"
        return 1
    fi
}

# Trap handler: stop what was started, remove temporary files unless a
# failure left them for inspection.
cleanup() {
    local job
    for job in $(jobs -p); do
        kill "$job" 2>/dev/null || true
    done
    if [[ -n $server_pid ]]; then
        { kill -KILL "$server_pid" && wait "$server_pid"; } 2>/dev/null || true
    fi
    if [[ -n $work_dir ]]; then
        if ((keep_work_dir)); then
            say "logs kept in $work_dir"
        else
            rm -rf "$work_dir"
        fi
    fi
}

# Seconds since the epoch with microseconds, for timings.
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

summary_lines=()
failed_runs=0

# Runs the harness once against the current server: run_harness LABEL ARGS...
# (ARGS beyond --host and --port). Records a summary line; on failure prints
# the harness's last lines.
run_harness() {
    local label=$1
    shift
    local output="$work_dir/harness.$((${#summary_lines[@]} + 1)).log" started result status=0
    started=$(now)
    timeout "${HARNESS_TIMEOUT:-300}" "$HARNESS_BIN" --host 127.0.0.1 --port "$server_port" "$@" \
        >"$output" 2>&1 || status=$?
    if ((status == 0)) && grep -q '^All tests passed!' "$output"; then
        result="ok"
    else
        result="FAILED (exit $status)"
        failed_runs=$((failed_runs + 1))
        keep_work_dir=1
        say "--- harness output ($label):"
        tail -n 25 "$output" | sed 's/^/  /'
    fi
    local line
    line=$(printf '%-48s %-20s %8ss' "$label" "$result" "$(elapsed_since "$started")")
    summary_lines+=("$line")
    say "$line"
}

print_summary() {
    say ""
    say "summary:"
    printf '  %s\n' "${summary_lines[@]}"
}

stress_main() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local port
    port=$(requested_port) || exit 1
    resolve_binaries
    make_work_dir
    local seeds=${STRESS_SEEDS:-}
    if [[ -z $seeds ]]; then
        local base
        base=$(date +%s)
        seeds="$base $((base + 1)) $((base + 2))"
    fi
    say "seeds: $seeds (set STRESS_SEEDS to repeat)"
    start_server "$port" || exit 1
    local dataset concurrency seed
    for dataset in generated brew; do
        local data_args=()
        [[ $dataset == generated ]] && data_args=(--count 3370)
        for concurrency in 1 10 25 50 100; do
            for seed in $seeds; do
                run_harness "$dataset concurrency $concurrency seed $seed" \
                    --concurrency "$concurrency" --seed "$seed" "${data_args[@]}"
                if ! server_alive; then
                    server_failed "died during the run"
                    print_summary
                    exit 1
                fi
            done
        done
    done
    local peak
    peak=$(server_peak_rss)
    local stopped=0
    stop_server || stopped=1

    print_summary
    say "server peak RSS (VmHWM): $peak"
    if ((failed_runs > 0 || stopped != 0)); then
        say "STRESS TEST FAILED: $failed_runs of ${#summary_lines[@]} runs failed$(
            ((stopped == 0)) || printf ', and the server did not stop cleanly')"
        exit 1
    fi
    say "stress test passed: ${#summary_lines[@]} runs"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    stress_main "$@"
fi
