#!/usr/bin/env bash
# Chaos test: the harness must pass while misbehaving clients hit the same
# server, and the server must survive restarts.
#
# Three rounds, at --unluckiness 10, 15 and 20, each running the harness at
# concurrency 10, 25 and 50 while, in the background:
#   - cut-off clients send a line and half of another, then disconnect;
#   - oversized clients send 1 MiB without a newline, then a newline and a
#     probe, and must get ERROR then the probe's answer on the same connection;
#   - garbage clients send random bytes, then a probe, and must get only
#     ERRORs and then the probe's answer;
#   - a slow client sends its line one byte at a time;
#   - silent clients hold connections open without sending anything;
#   - a client pipelines empty lines without ever reading its answers, and
#     must be disconnected within 20s: one --write-timeout (10s) bounds each
#     batch of answers, counted once the socket buffers are full.
# Between rounds the server gets SIGTERM, must exit 0, and is started again
# on the same port. Exits 1 if any harness run fails, any check of the
# misbehaving clients fails, or the server dies.
#
# Environment: SERVER_BIN, HARNESS_BIN, HARNESS_TIMEOUT and SERVER_PORT as
# for stress_test.sh; CHAOS_SEED (default: from the clock, printed).
#
# Uses bash's /dev/tcp only; every background client stops when its round
# ends and is killed by the exit trap at the latest.

set -euo pipefail
# shellcheck source=stress_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/stress_test.sh"

stop_file=""
anomalies=""
notes=""
troublemaker_deadline=0
troublemaker_pids=()

# A line no one indexes: its answer is always FAIL.
readonly probe="QUERY|chaos-probe|"

anomaly() { printf '%s\n' "$*" >>"$anomalies"; }
# Facts worth printing that are not failures.
note() { printf '%s\n' "$*" >>"$notes"; }

# Background clients run until the round's stop file appears; two minutes
# is a hard cap should the file never come.
keep_going() { [[ ! -e $stop_file ]] && ((SECONDS < troublemaker_deadline)); }

# Opens a connection on a new descriptor kept in conn; fails quietly.
connect() {
    { exec {conn}<>"/dev/tcp/127.0.0.1/$server_port"; } 2>/dev/null
}
disconnect() { exec {conn}>&-; }

# Reads one answer line from conn into answer, 10s deadline.
read_answer() {
    answer=""
    IFS= read -r -t 10 -u "$conn" answer
}

cut_off_client() {
    while keep_going; do
        if connect; then
            printf 'QUERY|chaos-cut|\nINDEX|chaos-cut|half-a-li' 1>&"$conn" 2>/dev/null
            disconnect
        fi
        sleep 0.05
    done
}

oversized_client() {
    while keep_going; do
        if connect; then
            {
                head -c 1048576 /dev/zero | tr '\0' x
                printf '\n%s\n' "$probe"
            } 1>&"$conn" 2>/dev/null
            if ! read_answer || [[ $answer != ERROR ]]; then
                anomaly "oversized line: expected ERROR, got '${answer}'"
            elif ! read_answer || [[ $answer != FAIL ]]; then
                anomaly "after an oversized line: probe expected FAIL, got '${answer}'"
            fi
            disconnect
        fi
        sleep 0.2
    done
}

garbage_client() {
    while keep_going; do
        if connect; then
            {
                head -c 2048 /dev/urandom
                printf '\n%s\n' "$probe"
            } 1>&"$conn" 2>/dev/null
            # Every garbage line gets ERROR; the probe's FAIL ends the batch.
            local lines=0
            while read_answer && [[ $answer == ERROR ]] && ((lines < 2100)); do
                lines=$((lines + 1))
            done
            if [[ $answer != FAIL ]]; then
                anomaly "after garbage ($lines ERRORs): probe expected FAIL, got '${answer}'"
            fi
            disconnect
        fi
        sleep 0.1
    done
}

slow_client() {
    local i
    while keep_going; do
        if connect; then
            for ((i = 0; i < ${#probe}; i++)); do
                printf '%s' "${probe:i:1}" 1>&"$conn" 2>/dev/null || break
                sleep 0.05
            done
            printf '\n' 1>&"$conn" 2>/dev/null
            if ! read_answer || [[ $answer != FAIL ]]; then
                anomaly "slow client: expected FAIL, got '${answer}'"
            fi
            disconnect
        fi
    done
}

silent_clients() {
    local held=()
    for _ in $(seq 20); do
        connect && held+=("$conn")
    done
    while keep_going; do
        sleep 0.2
    done
    for conn in "${held[@]}"; do
        disconnect
    done
}

# Pipelines empty lines (6 bytes of ERROR answer per byte sent) and never
# reads, until the server gives up on it; a server that never does fails.
non_reading_client() {
    connect || return 0
    local status=0 started=$EPOCHREALTIME
    timeout 20 yes '' 1>&"$conn" 2>/dev/null || status=$?
    if ((status == 124)); then
        anomaly "a client that never reads was still connected after 20s"
    else
        note "the client that never reads was disconnected after $(elapsed_since "$started")s"
    fi
    disconnect
}

start_troublemakers() {
    stop_file="$work_dir/stop.$1"
    troublemaker_deadline=$((SECONDS + 120))
    troublemaker_pids=()
    local client
    for client in cut_off_client cut_off_client oversized_client garbage_client \
        slow_client silent_clients non_reading_client; do
        # A write to a connection the server closed must not kill the
        # client with SIGPIPE: it should see the error and carry on.
        (
            set +e
            trap '' PIPE
            "$client"
        ) &
        troublemaker_pids+=($!)
    done
}

stop_troublemakers() {
    touch "$stop_file"
    local pid
    for pid in "${troublemaker_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    troublemaker_pids=()
}

# Prints and clears what the background clients found; non-zero if any of
# it is a failure.
check_anomalies() {
    sed 's/^/  /' "$notes"
    : >"$notes"
    [[ -s $anomalies ]] || return 0
    keep_work_dir=1
    say "misbehaving clients found problems:"
    sort "$anomalies" | uniq -c | sed 's/^/  /'
    : >"$anomalies"
    return 1
}

chaos_main() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local port
    port=$(requested_port) || exit 1
    resolve_binaries
    make_work_dir
    anomalies="$work_dir/anomalies"
    notes="$work_dir/notes"
    : >"$anomalies"
    : >"$notes"
    local seed=${CHAOS_SEED:-$(date +%s)}
    say "seed: $seed (set CHAOS_SEED to repeat)"

    local failed_checks=0 round=0 run=0 unluckiness concurrency peak
    start_server "$port" || exit 1
    for unluckiness in 10 15 20; do
        round=$((round + 1))
        say "round $round: unluckiness $unluckiness, misbehaving clients running"
        start_troublemakers "$round"
        for concurrency in 10 25 50; do
            run=$((run + 1))
            run_harness "unluckiness $unluckiness concurrency $concurrency seed $((seed + run))" \
                --unluckiness "$unluckiness" --concurrency "$concurrency" --seed "$((seed + run))"
            if ! server_alive; then
                server_failed "died during round $round"
                print_summary
                exit 1
            fi
        done
        stop_troublemakers
        check_anomalies || failed_checks=$((failed_checks + 1))
        if ! server_alive; then
            server_failed "died during round $round"
            print_summary
            exit 1
        fi
        peak=$(server_peak_rss)
        say "round $round done; server peak RSS (VmHWM) $peak; stopping it with SIGTERM"
        stop_server || failed_checks=$((failed_checks + 1))
        if ((round < 3)); then
            start_server "$server_port" || exit 1
        fi
    done

    print_summary
    if ((failed_runs > 0 || failed_checks > 0)); then
        say "CHAOS TEST FAILED: $failed_runs harness run(s) and $failed_checks round check(s) failed"
        exit 1
    fi
    say "chaos test passed: ${#summary_lines[@]} harness runs, 2 restarts"
}

chaos_main "$@"
