"""`make bench-memory`: peak RSS of the pipeline with 1 M users and 1 M IPs.

Writes (once) an archive of 2,000,000 successful client-credentials grants
over seven days: 1,000,000 distinct run-as users with two grants each, from
1,000,000 distinct source IPs, so every grant opens its own (user, app) pair,
failure window candidate and alert. Then replays it with the default limits
(`ccwatch.toml`) and reports wall time and peak RSS (/usr/bin/time). Replay
runs the same correlate → score → aggregate pipeline as `ccwatch run`; the
live shell adds its bounded merge (`kafka.max_pending`) on top.
"""
import os, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ccwatch = os.path.join(root, "target", "release", "ccwatch")
data = os.path.join(root, "bench-data", "memory")
path = os.path.join(data, "logins.jsonl")
USERS, GRANTS = 1_000_000, 2_000_000
START = 1_719_792_000_000  # 2024-07-01T00:00:00Z
SPAN = 7 * 86_400_000


def iso(ms):
    s, ms = divmod(ms, 1000)
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ms:03d}Z"


def ip(n):
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


if not os.path.exists(path):
    os.makedirs(data, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for j in range(GRANTS):
            u = j % USERS
            n = u if j < USERS else (u + USERS // 2) % USERS
            t = START + j * (SPAN // GRANTS)
            f.write('{"attributes":{"type":"LoginEvent"},"EventIdentifier":"m-%d","EventDate":"%s",'
                    '"UserId":"005Mm%010d","Username":"u%d@mem.example","LoginType":"Remote Access 2.0",'
                    '"LoginSubType":"OAuth Client Credentials","Status":"Success","SourceIp":"%s",'
                    '"Application":"App %d"}\n' % (j, iso(t), u, u, ip(n), u % 100))
    os.rename(path + ".tmp", path)

with tempfile.NamedTemporaryFile("r") as t:
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name, ccwatch, "replay", "--no-progress",
                          "--config", os.path.join(root, "ccwatch.toml"), path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, rss = t.read().split()[-2:]
if out.returncode != 0:
    sys.exit(out.stderr)
print(f"{GRANTS:,} grants, {USERS:,} users, {USERS:,} IPs: wall {float(wall):.1f} s, peak RSS {int(rss) // 1024} MB")
print("\n".join(l for l in out.stderr.splitlines() if "alerts:" in l or "state:" in l))
