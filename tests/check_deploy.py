#!/usr/bin/env python3
"""Checks the packaging in deploy/ for consistency with the code and with itself.

    check_deploy.py CCWATCH_BINARY

- Kubernetes: every core manifest validates (strictly) against Kubernetes' own
  schemas (kubernetes-validate); the PodMonitor (a CRD those schemas lack)
  selects the Deployment's pods and names its metrics port; probes hit /healthz
  and /readyz on that port; the port is the config's metrics port; every
  environment variable the config names is in the Secret; the config passes
  `ccwatch check-config`.
- Compose: the services exist; ccwatch's config is mounted where its command
  reads it and passes `check-config`; its bootstrap server is the broker
  service's advertised listener; Prometheus scrapes ccwatch's metrics port and
  mounts the rules; Grafana mounts the provisioning and the dashboard; the loader
  fills the topics the config reads; every host path mounted exists.
- Dockerfile: multi-stage, non-root, healthcheck on /healthz.
- logrotate: moves the file and reloads (SIGHUP) without creating it as root.

Run by tests/tools.rs with the venv scripts/test-tools.sh builds. Prints one
line per problem and exits 1 if there is any.
"""
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def env_names(cfg):
    """Environment variables a ccwatch config takes secrets from."""
    names = set()
    for v in cfg.get("kafka", {}).get("secret_properties", {}).values():
        if isinstance(v, dict) and "env" in v:
            names.add(v["env"])
    for s in cfg.get("sinks", []):
        if "url_env" in s:
            names.add(s["url_env"])
    return names


def check_config(ccwatch, text, env, where):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        r = subprocess.run([ccwatch, "check-config", f.name], env={**os.environ, **env}, capture_output=True, text=True)
        check(r.returncode == 0, f"{where}: ccwatch check-config fails: {r.stderr.strip()}")
    finally:
        os.unlink(f.name)


def metrics_port(cfg):
    return int(cfg.get("metrics", {}).get("listen", "127.0.0.1:9464").rsplit(":", 1)[1])


def kubernetes(ccwatch):
    k = os.path.join(DEPLOY, "kubernetes")
    files = sorted(os.path.join(k, f) for f in os.listdir(k) if f.endswith(".yaml"))
    docs = {}
    for f in files:
        for d in yaml.safe_load_all(open(f)):
            docs[d["kind"]] = d
    core = [f for f in files if not f.endswith("podmonitor.yaml")]
    venv_bin = os.path.dirname(sys.executable)
    r = subprocess.run([os.path.join(venv_bin, "kubernetes-validate"), "--strict", "-k", "1.30.0", *core],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "passed" in r.stdout + r.stderr,
          f"kubernetes-validate: {(r.stdout + r.stderr).strip()}")
    before = len(problems)
    for kind in ("ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "PodMonitor"):
        check(kind in docs, f"kubernetes: no {kind}")
    if len(problems) > before:
        return
    dep, pm, pdb, cm, sec = (docs[k] for k in ("Deployment", "PodMonitor", "PodDisruptionBudget", "ConfigMap", "Secret"))
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for name, sel in (("Deployment", dep["spec"]["selector"]["matchLabels"]),
                      ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"]),
                      ("PodMonitor", pm["spec"]["selector"]["matchLabels"])):
        check(all(labels.get(k) == v for k, v in sel.items()), f"kubernetes: the {name} selector {sel} misses the pods {labels}")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for ep in pm["spec"]["podMetricsEndpoints"]:
        check(ep["port"] in ports, f"kubernetes: the PodMonitor scrapes port {ep['port']!r}, the pod names {list(ports)}")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "kubernetes: liveness is not /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "kubernetes: readiness is not /readyz")
    for p in ("livenessProbe", "readinessProbe"):
        check(c[p]["httpGet"]["port"] in ports, f"kubernetes: {p} port {c[p]['httpGet']['port']} is not a container port")
    text = cm["data"]["ccwatch.toml"]
    cfg = tomllib.loads(text)
    check(ports.get("metrics") == metrics_port(cfg), f"kubernetes: container port {ports.get('metrics')} but metrics listen {cfg.get('metrics')}")
    check(cfg.get("metrics", {}).get("listen", "").startswith("0.0.0.0:"), "kubernetes: metrics listen on loopback: probes and scrapes cannot reach it")
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "config")
    check(f"{mount}/ccwatch.toml" in c["args"], f"kubernetes: args {c['args']} do not read the mounted config at {mount}")
    secret_keys = set(sec.get("stringData", {})) | set(sec.get("data", {}))
    refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    check(sec["metadata"]["name"] in refs, f"kubernetes: the pod takes env from {refs}, not the Secret {sec['metadata']['name']}")
    for n in env_names(cfg):
        check(n in secret_keys, f"kubernetes: the config reads ${n}, the Secret has {sorted(secret_keys)}")
    sc = c.get("securityContext", {})
    pod_sc = dep["spec"]["template"]["spec"].get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True and sc.get("allowPrivilegeEscalation") is False
          and sc.get("readOnlyRootFilesystem") is True, "kubernetes: the pod is not locked down (non-root, no escalation, read-only root)")
    check_config(ccwatch, text, {n: "x" if "WEBHOOK" not in n else "https://hooks.example/x" for n in env_names(cfg)}, "kubernetes")


def compose(ccwatch):
    path = os.path.join(DEPLOY, "compose.yaml")
    c = yaml.safe_load(open(path))
    s = c.get("services", {})
    before = len(problems)
    for name in ("kafka", "loader", "ccwatch", "prometheus", "grafana"):
        check(name in s, f"compose: no {name} service")
    if len(problems) > before:
        return
    base = os.path.dirname(path)

    def host_mounts(svc):
        out = {}
        for v in s[svc].get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith("."):
                out[dst] = os.path.normpath(os.path.join(base, src))
                check(os.path.exists(out[dst]), f"compose: {svc} mounts {src}, which does not exist")
        return out

    cw = host_mounts("ccwatch")
    cmd = s["ccwatch"]["command"]
    conf = cmd[cmd.index("--config") + 1]
    check(conf in cw, f"compose: ccwatch reads {conf}, which is not mounted")
    if conf in cw:
        text = open(cw[conf]).read()
        cfg = tomllib.loads(text)
        check_config(ccwatch, text, {}, "compose")
        adv = s["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        listeners = {m.group(1) for m in re.finditer(r"://([\w.-]+:\d+)", adv)}
        for b in cfg["kafka"]["bootstrap_servers"].split(","):
            check(b in listeners, f"compose: ccwatch bootstraps from {b}, the broker advertises {sorted(listeners)}")
        loader = " ".join(s["loader"]["command"]) if isinstance(s["loader"]["command"], list) else s["loader"]["command"]
        for t in (cfg["kafka"]["login_topic"], cfg["kafka"]["audit_topic"]):
            check(f"--topic {t}" in loader, f"compose: the loader never fills {t}")
        port = metrics_port(cfg)
        check(any(str(p).endswith(f":{port}") for p in s["ccwatch"].get("ports", [])), f"compose: port {port} not published")
        prom = host_mounts("prometheus")
        pcfg_path = prom.get("/etc/prometheus/prometheus.yml")
        check(pcfg_path is not None, "compose: prometheus.yml not mounted")
        if pcfg_path:
            pcfg = yaml.safe_load(open(pcfg_path))
            targets = [t for sc in pcfg["scrape_configs"] for st in sc["static_configs"] for t in st["targets"]]
            check(f"ccwatch:{port}" in targets, f"compose: Prometheus scrapes {targets}, not ccwatch:{port}")
            for rf in pcfg.get("rule_files", []):
                check(rf in prom, f"compose: Prometheus loads {rf}, which is not mounted")
    g = host_mounts("grafana")
    check("/etc/grafana/provisioning" in g, "compose: Grafana provisioning not mounted")
    dash = g.get("/var/lib/grafana/dashboards")
    check(dash is not None and os.path.exists(os.path.join(dash or "", "ccwatch.json")), "compose: the dashboard is not mounted")
    prov = yaml.safe_load(open(os.path.join(DEPLOY, "grafana/provisioning/dashboards/ccwatch.yml")))
    check(prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards", "grafana: the provider reads another path")
    build = s["loader"].get("build", {})
    check(os.path.exists(os.path.normpath(os.path.join(base, build.get("context", "."), build.get("dockerfile", "Dockerfile")))),
          "compose: the loader's Dockerfile does not exist")


def dockerfile():
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    check(len(re.findall(r"^FROM ", text, re.M)) >= 2, "Dockerfile: not multi-stage")
    users = re.findall(r"^USER (\S+)", text, re.M)
    check(users and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: runs as root")
    check(re.search(r"^HEALTHCHECK .*", text, re.M | re.S) and "/healthz" in text, "Dockerfile: no healthcheck on /healthz")
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for src in line.split():
            check(os.path.exists(os.path.join(ROOT, src)), f"Dockerfile: COPY {src}, which does not exist")


def logrotate():
    text = open(os.path.join(DEPLOY, "logrotate/ccwatch")).read()
    check("postrotate" in text and ("reload ccwatch" in text or "HUP" in text), "logrotate: no SIGHUP after rotation")
    check("copytruncate" not in text, "logrotate: copytruncate loses lines; ccwatch reopens on SIGHUP")
    check(re.search(r"^\s*nocreate", text, re.M), "logrotate: would create the file as root")
    paths = re.findall(r"^(/\S+)", text, re.M)
    unit = open(os.path.join(DEPLOY, "systemd/ccwatch.service")).read()
    check("ExecReload=/bin/kill -HUP $MAINPID" in unit, "systemd: reload does not send SIGHUP")
    state = re.search(r"^StateDirectory=(\S+)", unit, re.M)
    for p in paths:
        check(state and p.startswith(f"/var/lib/{state.group(1)}/"), f"logrotate: {p} is not in the unit's StateDirectory")


def main():
    ccwatch = sys.argv[1]
    kubernetes(ccwatch)
    compose(ccwatch)
    dockerfile()
    logrotate()
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problems in deploy/")
        return 1
    print("deploy/ is consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
