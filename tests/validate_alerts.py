#!/usr/bin/env python3
"""Validates ccwatch alert lines against the standards they claim.

    validate_alerts.py ocsf FILE   # the official OCSF schema + Prowler's py-ocsf-models
    validate_alerts.py ecs FILE ECS_FLAT_JSON   # Elastic's ECS field list

Run by tests/tools.rs with the venv scripts/test-tools.sh builds. Prints one
line per problem and exits 1 if there is any; prints a count and exits 0
otherwise. Every format: no null anywhere.
"""
import ipaddress
import json
import sys
from datetime import datetime


def nulls(v, path=""):
    if v is None:
        yield path
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from nulls(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from nulls(x, f"{path}[{i}]")


def ocsf(lines):
    import jsonschema
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
    from py_ocsf_models.events.findings.detection_finding import DetectionFinding

    problems = []
    validators = {}
    for n, a in lines:
        version = a.get("metadata", {}).get("version")
        profiles = tuple(a.get("metadata", {}).get("profiles", []))
        if version != "1.5.0":
            problems.append(f"line {n}: metadata.version {version!r}, expected the pinned 1.5.0")
            continue
        if (version, profiles) not in validators:
            schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version)).get_class_schema(
                "detection_finding", list(profiles)
            )
            validators[(version, profiles)] = jsonschema.Draft202012Validator(schema)
        for e in validators[(version, profiles)].iter_errors(a):
            problems.append(f"line {n}: OCSF {version} {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
        try:
            DetectionFinding(**a)
        except Exception as e:  # pydantic's ValidationError, or a model bug
            problems.append(f"line {n}: py-ocsf-models: {str(e)[:300]}")
        for p in ("cloud", "evidences", "observables"):
            if p == "cloud" and "cloud" not in profiles:
                problems.append(f"line {n}: cloud is used but the cloud profile is not declared")
        for ev in a.get("evidences", []):
            ip = ev.get("src_endpoint", {}).get("ip")
            if ip and not any(o.get("value") == ip and o.get("type_id") == 2 for o in a.get("observables", [])):
                problems.append(f"line {n}: source IP {ip} is not an observable")
        for att in a.get("finding_info", {}).get("attacks", []):
            t, s = att.get("technique", {}).get("uid", ""), att.get("sub_technique", {}).get("uid")
            if "." in t:
                problems.append(f"line {n}: sub-technique id {t} in technique.uid")
            if s and not s.startswith(t + "."):
                problems.append(f"line {n}: sub-technique {s} does not belong to technique {t}")
            if not att.get("tactic", {}).get("uid", "").startswith("TA"):
                problems.append(f"line {n}: no tactic for {t}")
    return problems


def ecs(lines, flat_path):
    fields = json.load(open(flat_path))
    problems = []

    def leaves(v, path=""):
        if isinstance(v, dict) and v:
            for k, x in v.items():
                yield from leaves(x, f"{path}.{k}" if path else k)
        else:
            yield path, v

    def typed(kind, v):
        if kind in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
            return isinstance(v, str)
        if kind == "ip":
            try:
                ipaddress.ip_address(v)
                return True
            except (ValueError, TypeError):
                return False
        if kind == "long":
            return isinstance(v, int) and not isinstance(v, bool)
        if kind in ("float", "scaled_float", "double"):
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind == "date":
            try:
                datetime.fromisoformat(str(v).replace("Z", "+00:00"))
                return True
            except ValueError:
                return False
        if kind == "boolean":
            return isinstance(v, bool)
        return True

    for n, a in lines:
        if a.get("ecs", {}).get("version") != "8.11.0":
            problems.append(f"line {n}: ecs.version {a.get('ecs', {}).get('version')!r}, expected the pinned 8.11.0")
        for path, v in leaves(a):
            if path == "ccwatch" or path.startswith("ccwatch."):
                continue
            f = fields.get(path)
            if f is None:
                problems.append(f"line {n}: {path} is not an ECS 8.11 field (custom fields go under ccwatch.*)")
                continue
            values = v if isinstance(v, list) else [v]
            if isinstance(v, list) and "array" not in f.get("normalize", []):
                problems.append(f"line {n}: {path} is an array; ECS does not declare it one")
            for x in values:
                if not typed(f["type"], x):
                    problems.append(f"line {n}: {path}={x!r} is not a valid ECS {f['type']}")
                if f.get("allowed") and x not in f["allowed"]:
                    problems.append(f"line {n}: {path}={x!r} is not one of ECS's allowed values {f['allowed']}")
        tech = a.get("threat", {}).get("technique", {})
        if not isinstance(tech, dict):
            problems.append(f"line {n}: threat.technique is not an object of ECS fields")
        elif any("." in t for t in tech.get("id", [])):
            problems.append(f"line {n}: a sub-technique id in threat.technique.id")
        for key in ("threat.tactic.id", "event.action", "related.ip" if "source" in a else None):
            if key and not dict(leaves(a)).get(key):
                problems.append(f"line {n}: {key} missing")
    return problems


def main():
    kind, path = sys.argv[1], sys.argv[2]
    lines = [(i + 1, json.loads(l)) for i, l in enumerate(open(path)) if l.strip()]
    if not lines:
        print(f"{path}: no alert lines")
        return 1
    problems = [f"line {n}: null at {p}" for n, a in lines for p in nulls(a)]
    problems += ocsf(lines) if kind == "ocsf" else ecs(lines, sys.argv[3])
    for p in problems[:50]:
        print(p)
    if problems:
        print(f"{len(problems)} problems in {len(lines)} {kind} lines")
        return 1
    print(f"{len(lines)} {kind} lines valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
