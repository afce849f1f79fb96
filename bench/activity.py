"""`make bench`, activity archive: ccwatch replay beside DuckDB on the same
activity-heavy archive (`ccwatch generate --activity`: 40% client-credentials
grants, 60% ApiEvent / ELF RestApi activity, about 100,000 grant sessions open
at once).

Rounds alternate the two (the VM's speed drifts), wall time and peak RSS come
from /usr/bin/time, and the two must agree: the activity records DuckDB joins
to a grant by LoginKey equal the records ccwatch attributes by key.
"""
import json, os, platform, re, statistics, sys

from timing import timed

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = os.path.join(root, "bench-data", "activity-1m")
ccwatch = os.path.join(root, "target", "release", "ccwatch")
python = os.path.join(root, "bench-data", "venv", "bin", "python")
rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
QUERY = """
import json, sys, time, pathlib, duckdb
con = duckdb.connect(); con.execute("SET threads = 2"); con.execute(f"SET file_search_path = '{sys.argv[1]}'")
sql = pathlib.Path(sys.argv[2]).read_text()
t = time.perf_counter(); rows = con.execute(sql).fetchall(); s = time.perf_counter() - t
print(json.dumps({"version": duckdb.__version__, "seconds": round(s, 3), "groups": len(rows),
                  "records": sum(r[3] for r in rows), "rows": sum(r[4] or 0 for r in rows)}))
"""


events = sum(1 for f in ("logins.jsonl", "activity.jsonl") for _ in open(os.path.join(data, f), "rb"))
size = sum(os.path.getsize(os.path.join(data, f)) for f in ("logins.jsonl", "activity.jsonl"))
cc, dd = [], []
for i in range(rounds):
    wall, rss, out = timed([ccwatch, "replay", "--no-progress", "--inventory", "users.json", "--inventory", "psa.json",
                            "--output", "alerts.jsonl", "audit.jsonl", "logins.jsonl", "activity.jsonl"], data)
    cc.append((wall, rss))
    summary = out.stderr
    dwall, drss, dout = timed([python, "-c", QUERY, ".", os.path.join(root, "bench", "duckdb_activity.sql")], data)
    duck = json.loads(dout.stdout)
    dd.append((duck["seconds"], dwall, drss))
    print(f"round {i + 1}: ccwatch {wall:.2f} s ({rss} MB peak)   duckdb query {duck['seconds']:.2f} s "
          f"(process {dwall:.2f} s, {drss} MB peak)", flush=True)

m = re.search(r"activity:\s+records=(\d+) sessions=(\d+) attributed\(key=(\d+) request=(\d+) tuple=(\d+) late=(\d+)\) "
              r"unattributed=(\d+) waiting=(\d+) evictions\(sessions=(\d+) waiting=(\d+)\)", summary)
records, sessions, by_key, _, by_tuple, _, unattributed, _, evicted, _ = map(int, m.groups())
access = sum(1 for l in open(os.path.join(data, "alerts.jsonl")) if '"client_credentials_data_access"' in l)
print()
print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
print(f"archive: {events} events ({records} activity), {size / 1e9:.2f} GB of JSON lines, {rounds} rounds")
best, med = min(w for w, _ in cc), statistics.median(w for w, _ in cc)
dbest, dmed = min(s for s, _, _ in dd), statistics.median(s for s, _, _ in dd)
rss = max(r for _, r in cc)
print(f"ccwatch replay: best {best:.2f} s = {events / best:,.0f} events/s; median {med:.2f} s = {events / med:,.0f} "
      f"events/s; peak RSS {rss} MB")
print(f"  sessions {sessions} (evicted {evicted}), attributed key={by_key} tuple={by_tuple}, "
      f"unattributed={unattributed}; data-access alert lines {access}")
print(f"duckdb {duck['version']} (2 threads): best {dbest:.2f} s; median {dmed:.2f} s; peak RSS {max(r for _, _, r in dd)} MB")
print(f"speed-up over duckdb: best/best {dbest / best:.2f}x, median/median {dmed / med:.2f}x")
agree = by_key == duck["records"]
print(f"agreement: ccwatch attributed {by_key} records by key; duckdb joined {duck['records']} by LoginKey "
      f"-> {'MATCH' if agree else 'MISMATCH'}")
targets = [("events/s >= 1,000,000", events / best >= 1e6), (">= 2x duckdb", dbest / best >= 2),
           ("peak RSS < 200 MB", rss < 200)]
print("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in targets))
sys.exit(0 if agree else 1)
