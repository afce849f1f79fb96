#!/usr/bin/env bash
# Runs a command beside a real Kafka-protocol broker.
#
#   scripts/test-broker.sh COMMAND [ARGS...]
#
# Installs Tansu (a Kafka-compatible broker from crates.io) if it is missing
# (one time, about 15 minutes on 2 cores), starts it on a free loopback port
# with SQLite storage in a fresh file, exports CCWATCH_TEST_BROKER=127.0.0.1:PORT,
# runs the command, and stops the broker (and deletes its file) whatever the
# command's outcome.
#
# Why not Tansu's in-memory engine: it cannot serve a fetch that starts inside
# a record batch. Asked for offset 50 of a batch holding 0..99, it answers with
# the next batch (100..), silently skipping 50..99. A consumer resuming from a
# committed offset lands mid-batch all the time, so that engine loses records
# on every restart (tests/live_broker.rs checks the broker for this first).
# The SQLite engine serves such fetches correctly.
#
# CCWATCH_TEST_BROKER_STORAGE=memory selects the in-memory engine anyway:
# `make bench-kafka` uses it, because the SQLite engine is one busy core that
# serves ~5,000 records/s (BENCHMARKS.md), and a benchmark that reads each
# topic once from its start, with no restart, never fetches mid-batch.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
TANSU_VERSION=0.6.0

if ! command -v tansu >/dev/null 2>&1 || ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "test-broker: installing tansu $TANSU_VERSION (one time, ~15 min)" >&2
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore,libsql
fi

port="${CCWATCH_TEST_BROKER_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
mkdir -p target/test-broker
log="target/test-broker.log"
db="target/test-broker/tansu-$port.db"
rm -f "$db" "$db-shm" "$db-wal"
case "${CCWATCH_TEST_BROKER_STORAGE:=sqlite}" in
    sqlite) engine="sqlite://$db" ;;
    memory) engine="memory://tansu/" ;;
    *) echo "test-broker: CCWATCH_TEST_BROKER_STORAGE must be sqlite or memory" >&2; exit 2 ;;
esac
export CCWATCH_TEST_BROKER_STORAGE
tansu broker --storage-engine "$engine" \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$db" "$db-shm" "$db-wal"' EXIT

for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "test-broker: tansu exited; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "test-broker: tansu listening on 127.0.0.1:$port (log: $log)" >&2
export CCWATCH_TEST_BROKER="127.0.0.1:$port"
"$@"
