"""`make bench`: ccwatch replay beside DuckDB on the same generated archive.

Runs both, interleaved, for several rounds on this machine (a shared VM whose
speed drifts, so rounds alternate and the best and the median are both
reported), measures wall time and peak RSS with /usr/bin/time, and checks that
the two agree: the number of (user, app, IP, day) groups DuckDB finds equals the
number of distinct `client_credentials_grant` alerts ccwatch writes, and the
grant counts sum to the same total.
"""
import json, os, platform, statistics, sys

from timing import timed

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = os.path.join(root, "bench-data", "1m")
ccwatch = os.path.join(root, "target", "release", "ccwatch")
python = os.path.join(root, "bench-data", "venv", "bin", "python")
rounds = int(os.environ.get("BENCH_ROUNDS", "5"))


def final_alerts(path):
    last = {}
    with open(path) as f:
        for line in f:
            a = json.loads(line)
            last[a["alert_id"]] = a
    grants = [a for a in last.values() if a["rule"] == "client_credentials_grant"]
    return len(grants), sum(a["count"] for a in grants)


size = os.path.getsize(os.path.join(data, "logins.jsonl"))
events = sum(1 for _ in open(os.path.join(data, "logins.jsonl"), "rb"))
cc, dd = [], []
for i in range(rounds):
    alerts = os.path.join(data, "alerts.jsonl")
    wall, rss, out = timed([ccwatch, "replay", "--no-progress", "--inventory", "users.json", "--inventory", "psa.json",
                            "--output", alerts, "audit.jsonl", "logins.jsonl"], data)
    cc.append((wall, rss))
    dwall, drss, dout = timed([python, os.path.join(root, "bench", "duckdb_bench.py"), ".", "2"], data)
    duck = json.loads(dout.stdout)
    dd.append((duck["seconds"], dwall, drss))
    print(f"round {i + 1}: ccwatch {wall:.2f} s ({rss} MB peak)   duckdb query {duck['seconds']:.2f} s "
          f"(process {dwall:.2f} s, {drss} MB peak)", flush=True)

groups, grants = final_alerts(alerts)
print()
print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
print(f"archive: {events} login events, {size / 1e9:.2f} GB of JSON lines, {rounds} rounds")
best, med = min(w for w, _ in cc), statistics.median(w for w, _ in cc)
dbest, dmed = min(s for s, _, _ in dd), statistics.median(s for s, _, _ in dd)
print(f"ccwatch replay: best {best:.2f} s = {events / best:,.0f} events/s ({size / best / 1e6:.0f} MB/s); "
      f"median {med:.2f} s = {events / med:,.0f} events/s; peak RSS {max(r for _, r in cc)} MB")
print(f"duckdb {duck['version']} (2 threads): best {dbest:.2f} s; median {dmed:.2f} s; peak RSS {max(r for _, _, r in dd)} MB")
print(f"speed-up over duckdb: best/best {dbest / best:.2f}x, median/median {dmed / med:.2f}x")
print(f"agreement: ccwatch {groups} grant alerts covering {grants} grants; duckdb {duck['groups']} groups covering "
      f"{duck['grants']} grants -> {'MATCH' if (groups, grants) == (duck['groups'], duck['grants']) else 'MISMATCH'}")
targets = [("events/s >= 1,000,000", events / best >= 1e6), (">= 3x duckdb", dbest / best >= 3),
           ("peak RSS < 200 MB", max(r for _, r in cc) < 200)]
print("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets))
sys.exit(0 if (groups, grants) == (duck["groups"], duck["grants"]) else 1)
