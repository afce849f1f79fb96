# ccwatch — the two commands a new user needs are `make demo` and `make test`.
CARGO ?= cargo
BENCH_DATA := bench-data/1m
SAMPLE_ARGS := --inventory samples/inventory/users.json \
               --inventory samples/inventory/permission-set-assignments.json \
               --config ccwatch.toml samples/audit samples/logins samples/elf samples/activity

.PHONY: demo replay-demo build test lint check bench bench-data bench-kafka bench-json-libs bench-restart bench-memory fmt clean

## The main job: the live pipeline on the shipped samples, against an
## in-process mock Kafka cluster; alerts on stdout, metrics on :9464. Ctrl-C stops it.
demo: build
	./target/release/ccwatch demo --config ccwatch.toml

## The same samples through replay (archived files, no Kafka).
replay-demo: build
	./target/release/ccwatch replay $(SAMPLE_ARGS)

build:
	$(CARGO) build --release --locked

## Every test: unit, decoder-on-real-samples, property, golden replay, CLI,
## live mode on librdkafka's mock cluster and on a real broker (Tansu, started
## by scripts/test-broker.sh, installed on first use), and the operations files
## checked by real tools: a Prometheus server, promtool rule tests, systemd-analyze,
## the OCSF and Kubernetes schemas (scripts/test-tools.sh installs them).
test:
	scripts/test-tools.sh scripts/test-broker.sh $(CARGO) test --locked --all-targets --features kafka-integration-tests,external-tool-tests --no-fail-fast

## Formatting and lints, as CI enforces them.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features kafka-integration-tests,external-tool-tests -- -D warnings

check: lint test

fmt:
	$(CARGO) fmt

## 1,000,000-event archive (~1 GB), generated once by ccwatch's own generator.
bench-data: build
	@test -f $(BENCH_DATA)/logins.jsonl || ./target/release/ccwatch generate --out $(BENCH_DATA) --events 1000000
	@test -f bench-data/activity-1m/activity.jsonl || ./target/release/ccwatch generate --activity --out bench-data/activity-1m --events 1000000
	@test -x bench-data/venv/bin/python || (python3 -m venv bench-data/venv && bench-data/venv/bin/pip install -q duckdb==2.0.1)

## Replay throughput and memory beside DuckDB on the same archives, the login
## archive and the activity-heavy one (see BENCHMARKS.md).
bench: bench-data
	python3 bench/bench.py
	python3 bench/activity.py

## ccwatch's per-line decoder beside simd-json and sonic-rs on the first
## 200,000 lines of the bench archive, one thread (see BENCHMARKS.md). Its own
## crate and target directory, so the main build never compiles those libraries.
bench-json-libs: bench-data
	head -200000 $(BENCH_DATA)/logins.jsonl > bench-data/200k.jsonl
	cd bench/json-libs && RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=../../target/json-libs \
		$(CARGO) run --release --locked -- ../../bench-data/200k.jsonl 7

## Live mode through a real broker on this machine: sustained records/s and
## end-to-end latency at 10,000 records/s (see BENCHMARKS.md).
bench-kafka: build
	$(CARGO) build --release --locked --example kafka_bench
	CCWATCH_TEST_BROKER_STORAGE=memory scripts/test-broker.sh ./target/release/examples/kafka_bench

## Restart-to-first-alert after a SIGKILL, with and without static group
## membership (kafka.group_instance_id), through a real broker (see BENCHMARKS.md).
bench-restart: build
	scripts/test-broker.sh python3 bench/restart.py

## Peak RSS with 1 M users and 1 M IPs (2 M grants) under the default limits (see BENCHMARKS.md).
bench-memory: build
	python3 bench/memory.py

clean:
	$(CARGO) clean
	rm -rf bench-data
