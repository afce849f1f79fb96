"""`make bench-restart`: restart-to-first-alert after a SIGKILL, with and
without static group membership (`kafka.group_instance_id`, KIP-345).

Runs under `scripts/test-broker.sh` (a real Kafka-protocol broker, Tansu on
SQLite). For each mode it loads a generated archive into fresh topics, starts
`ccwatch run` with a slow webhook so it is mid-stream, SIGKILLs it once alerts
flow, starts it again at once with the same config, and measures the time
from the restart to the first alert line the new process writes to its file
sink: the first client-credentials-grant alert line, which needs login
partitions (enablement alerts come from the audit topic, read at once by
any instance). The consumers keep librdkafka's default `session.timeout.ms` (45 s): a
new member without a static id cannot get the dead member's partitions
before the group coordinator expires that member.
"""
import http.server, os, signal, socketserver, subprocess, sys, tempfile, threading, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ccwatch = os.path.join(root, "target", "release", "ccwatch")
broker = os.environ["CCWATCH_TEST_BROKER"]
data = os.path.join(root, "bench-data", "restart")
cap = float(os.environ.get("RESTART_CAP_SECS", "180"))


class SlowHook(http.server.BaseHTTPRequestHandler):
    delay = 0.02

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(SlowHook.delay)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def lines(path):
    """Grant alert lines in the file sink (enablement alerts come from the
    audit topic, which a new instance reads without waiting for the group)."""
    try:
        with open(path) as f:
            return sum(1 for l in f if '"rule":"client_credentials_grant"' in l)
    except FileNotFoundError:
        return 0


def measure(mode, hook_url):
    tag = f"{mode}-{int(time.time())}"
    topics = {k: f"bench-{k}-{tag}" for k in ["logins", "audit", "alerts", "dead"]}
    others = [os.path.join(data, f) for f in sorted(os.listdir(data)) if f != "logins.jsonl"]
    run([ccwatch, "produce", "--brokers", broker, "--topic", topics["audit"], "--partitions", "1"] + others)
    run([ccwatch, "produce", "--brokers", broker, "--topic", topics["logins"], "--partitions", "3",
         os.path.join(data, "logins.jsonl")])
    for t in ["alerts", "dead"]:
        run([ccwatch, "produce", "--brokers", broker, "--topic", topics[t], "--partitions", "1", "/dev/null"])
    work = tempfile.mkdtemp(prefix="ccwatch-restart-")
    sink = os.path.join(work, "alerts.jsonl")
    static = 'group_instance_id = "bench-0"\n' if mode == "static" else ""
    base = open(os.path.join(root, "ccwatch.toml")).read()
    cfg = os.path.join(work, "ccwatch.toml")
    with open(cfg, "w") as f:
        f.write(f"""{base}
[kafka]
bootstrap_servers = "{broker}"
group_id = "bench-{tag}"
login_topic = "{topics['logins']}"
audit_topic = "{topics['audit']}"
dead_letter_topic = "{topics['dead']}"
warmup_messages = 100000
{static}
[metrics]
listen = "127.0.0.1:0"

[[sinks]]
type = "webhook"
name = "slow"
url = "{hook_url}"

[[sinks]]
type = "file"
name = "f"
path = "{sink}"
""")
    SlowHook.delay = 0.02
    log = open(os.path.join(work, "first.log"), "w")
    first = subprocess.Popen([ccwatch, "run", "--config", cfg], stderr=log, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while lines(sink) < 20:
        if time.time() > deadline:
            sys.exit(f"{mode}: no alerts from the first run")
        time.sleep(0.1)
    time.sleep(3)  # auto-commit runs every second
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = lines(sink)
    SlowHook.delay = 0
    log = open(os.path.join(work, "second.log"), "w")
    start = time.time()
    second = subprocess.Popen([ccwatch, "run", "--config", cfg], stderr=log, stdout=subprocess.DEVNULL)
    took = None
    while time.time() - start < cap:
        if lines(sink) > at_kill:
            took = time.time() - start
            break
        time.sleep(0.05)
    second.send_signal(signal.SIGTERM)
    try:
        second.wait(30)
    except subprocess.TimeoutExpired:
        second.kill()
    return took


def main():
    if not os.path.exists(os.path.join(data, "logins.jsonl")):
        run([ccwatch, "generate", "--out", data, "--events", "30000", "--seed", "7"])
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    print(f"restart-to-first-alert, Tansu 0.6.0 (SQLite), default session.timeout.ms (45 s), {os.cpu_count()} cores")
    for mode in ["static", "dynamic"]:
        took = measure(mode, hook_url)
        shown = f"{took:.1f} s" if took is not None else f"no alert within {cap:.0f} s"
        print(f"  {mode:8} membership: {shown}", flush=True)


main()
