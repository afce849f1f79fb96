#!/usr/bin/env bash
# Runs a command with the external tools the tests use, installing what is
# missing (one time):
#
#   scripts/test-tools.sh COMMAND [ARGS...]
#
# - Prometheus and promtool, from the distribution's `prometheus` package;
# - systemd-analyze (package `systemd`), for the unit file;
# - a Python venv in target/test-venv with Prowler's py-ocsf-models, the
#   official OCSF schemas (ocsf-json-schema) with jsonschema, and
#   kubernetes-validate (Kubernetes' OpenAPI schemas, offline) with PyYAML;
# - Elastic's ECS 8.11 field list, from the npm package @elastic/ecs@8.11.1,
#   flattened to JSON by node.
#
# Exports CCWATCH_TEST_PROMETHEUS, CCWATCH_TEST_PROMTOOL,
# CCWATCH_TEST_SYSTEMD_ANALYZE, CCWATCH_TEST_PYTHON and CCWATCH_TEST_ECS_FIELDS,
# then runs the command.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "test-tools: installing ${need[*]} (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

venv=target/test-venv
packages=(py-ocsf-models==0.10.0 ocsf-json-schema==1.2.0 jsonschema==4.26.0 kubernetes-validate==1.37.0 PyYAML==6.0.4)
stamp="$venv/.installed-$(echo "${packages[*]}" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "test-tools: creating $venv (${packages[*]})" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2
    touch "$stamp"
fi

ecs="$venv/ecs-8.11-fields-v2.json"
if [ ! -s "$ecs" ]; then
    echo "test-tools: fetching the ECS 8.11 field list (@elastic/ecs@8.11.1)" >&2
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack -q @elastic/ecs@8.11.1 >/dev/null && tar xzf elastic-ecs-8.11.1.tgz)
    node -e '
        const f = require(process.argv[1]).EcsFlat;
        const out = {};
        for (const [k, v] of Object.entries(f)) {
            out[k] = { type: v.type, normalize: v.normalize || [] };
            if (v.allowed_values) out[k].allowed = v.allowed_values.map((a) => a.name);
        }
        require("fs").writeFileSync(process.argv[2], JSON.stringify(out));
    ' "$tmp/package/generated/ecs_flat.js" "$PWD/$ecs"
    rm -rf "$tmp"
fi

export CCWATCH_TEST_ECS_FIELDS="$PWD/$ecs"
export CCWATCH_TEST_PROMETHEUS="$(command -v prometheus)"
export CCWATCH_TEST_PROMTOOL="$(command -v promtool)"
export CCWATCH_TEST_SYSTEMD_ANALYZE="$(command -v systemd-analyze)"
export CCWATCH_TEST_PYTHON="$PWD/$venv/bin/python"
"$@"
