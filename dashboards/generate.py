#!/usr/bin/env python3
"""Writes dashboards/ccwatch.json, the Grafana dashboard for ccwatch.

    python3 dashboards/generate.py

The dashboard is generated so every query gets the same `job`/`instance`
selector and `$__rate_interval`, and every panel a description. Edit this file,
not the JSON. tests/ecosystem.rs evaluates every expression against a real
Prometheus scraping `ccwatch demo`.
"""
import json
import os

SEL = 'job=~"$job",instance=~"$instance"'


def sel(extra=""):
    return "{" + SEL + ("," + extra if extra else "") + "}"


# The count since a start is the counter itself while the process is younger
# than the window (its first scrape may already be above 0); increase() after.
def raised_in(window, severity):
    c = "ccwatch_alerts_raised_total" + sel('severity="' + severity + '"')
    return (
        f"sum(sum by (job, instance, rule) ({c} and on (job, instance) "
        f"(time() - process_start_time_seconds{sel()}) < {window}) "
        f"or sum by (job, instance, rule) (increase({c}[{window}s]))) or vector(0)"
    )


panel_id = 0


def panel(kind, title, desc, targets, x, y, w, h, **extra):
    global panel_id
    panel_id += 1
    p = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
            for i, (e, l) in enumerate(targets)
        ],
    }
    p.update(extra)
    return p


def thresholds(*steps):
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def stat(title, desc, expr, x, y, steps, mappings=None, unit="none"):
    return panel(
        "stat", title, desc, [(expr, "")], x, y, 6, 4,
        fieldConfig={"defaults": {"thresholds": thresholds(*steps), "mappings": mappings or [], "unit": unit,
                                  "color": {"mode": "thresholds"}}, "overrides": []},
        options={"colorMode": "background", "graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}},
    )


def series(title, desc, targets, x, y, unit="short", w=12, steps=None, mappings=None):
    return panel(
        "timeseries", title, desc, targets, x, y, w, 8,
        fieldConfig={"defaults": {"unit": unit, "thresholds": thresholds(*(steps or [(None, "green")])),
                                  "mappings": mappings or [], "custom": {"thresholdsStyle": {"mode": "off" if not steps else "line"}}},
                     "overrides": []},
    )


def row(title, y):
    global panel_id
    panel_id += 1
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


BOOL = lambda off, on, off_color, on_color: [
    {"type": "value", "options": {"0": {"text": off, "color": off_color, "index": 0}, "1": {"text": on, "color": on_color, "index": 1}}}
]

panels = [
    row("Detections", 0),
    stat("Critical alerts (24h)", "Critical client-credentials alerts raised in the last 24 hours (counted from a process's start when it is younger). Any is a page.",
         raised_in(86400, "critical"), 0, 1, [(None, "green"), (1, "red")]),
    stat("High alerts (24h)", "High-severity alerts raised in the last 24 hours.",
         raised_in(86400, "high"), 6, 1, [(None, "green"), (1, "orange")]),
    stat("Unattributed activity (1h)", "API activity of client-credentials run-as users that matched no grant in the last hour: a blind spot of the detector.",
         f"sum(increase(ccwatch_activity_unattributed_total{sel()}[1h])) or vector(0)", 12, 1, [(None, "green"), (1, "orange")]),
    stat("Audit caught up", "1 once every setup-audit partition has been read to its end (the instance is ready). The lowest of the selected instances.",
         f"min(ccwatch_audit_caught_up{sel()})", 18, 1, [(None, "red"), (1, "green")],
         mappings=BOOL("Not caught up", "Caught up", "red", "green")),
    series("Alerts raised by rule and severity", "New alerts per second, by rule and severity.",
           [(f"sum by (rule, severity) (rate(ccwatch_alerts_raised_total{sel()}[$__rate_interval]))", "{{rule}} {{severity}}")], 0, 5),
    series("Alert lines: raised, updated, closed", "Alert lines written to the sinks per second: raised (new alert), score_rose (an update), closed (the final line of its day).",
           [(f"sum by (kind) (rate(ccwatch_alert_lines_total{sel()}[$__rate_interval]))", "{{kind}}")], 12, 5),
    series("Grants by class and outcome", "Login records classified per second, by grant class and outcome.",
           [(f"sum by (class, outcome) (rate(ccwatch_grants_total{sel()}[$__rate_interval]))", "{{class}} {{outcome}}")], 0, 13),
    series("Activity attribution", "API-activity records attributed to a grant per second, by method, and those that matched none.",
           [(f"sum by (method) (rate(ccwatch_activity_attributed_total{sel()}[$__rate_interval]))", "{{method}}"),
            (f"sum(rate(ccwatch_activity_unattributed_total{sel()}[$__rate_interval]))", "unattributed")], 12, 13),
    row("Intake", 21),
    stat("Consumer lag", "Messages behind the end of the login topic, summed over the selected instances.",
         f"sum(ccwatch_consumer_lag_messages{sel()}) or vector(0)", 0, 22, [(None, "green"), (10000, "orange"), (100000, "red")]),
    stat("Intake paused", "1 while consumption is paused because the run loop took nothing for a second (usually a failing sink).",
         f"max(ccwatch_intake_paused{sel()})", 6, 22, [(None, "green"), (1, "red")], mappings=BOOL("Running", "Paused", "green", "red")),
    stat("Stalled partitions", "Login partitions with lag that delivered nothing for kafka.stall_after_secs.",
         f"sum(ccwatch_partition_stalled{sel()}) or vector(0)", 12, 22, [(None, "green"), (1, "red")]),
    stat("Event-time lag", "Wall clock minus the latest event time processed.",
         f"time() - max(ccwatch_event_time_watermark_seconds{sel()})", 18, 22, [(None, "green"), (600, "orange"), (3600, "red")], unit="s"),
    series("Records consumed by topic and kind", "Kafka messages consumed per second, by topic and decoded record kind.",
           [(f"sum by (topic, kind) (rate(ccwatch_records_consumed_total{sel()}[$__rate_interval]))", "{{topic}} {{kind}}")], 0, 26),
    series("Rejected records by reason", "Undecodable records per second, by reason, and those sent to the dead-letter topic.",
           [(f"sum by (reason) (rate(ccwatch_records_rejected_total{sel()}[$__rate_interval]))", "rejected {{reason}}"),
            (f"sum by (reason) (rate(ccwatch_dead_letters_total{sel()}[$__rate_interval]))", "dead-lettered {{reason}}")], 12, 26),
    series("Consumer lag per partition", "Messages behind the end of each partition.",
           [(f"max by (topic, partition) (ccwatch_consumer_lag_messages{sel()})", "{{topic}}/{{partition}}")], 0, 34,
           steps=[(None, "green"), (100000, "red")]),
    series("Rebalances and intake pauses", "Partition assignment changes per 15 minutes, and whether intake is paused.",
           [(f"sum by (change) (increase(ccwatch_partition_assignment_changes_total{sel()}[15m]))", "{{change}}"),
            (f"max(ccwatch_intake_paused{sel()})", "intake paused")], 12, 34),
    row("Delivery", 42),
    series("Sink deliveries and failures", "Alerts accepted per second by each sink, and failed attempts.",
           [(f"sum by (sink) (rate(ccwatch_sink_deliveries_total{sel()}[$__rate_interval]))", "delivered {{sink}}"),
            (f"sum by (sink) (rate(ccwatch_sink_failures_total{sel()}[$__rate_interval]))", "failed {{sink}}"),
            (f"sum by (sink, reason) (rate(ccwatch_sink_dead_letters_total{sel()}[$__rate_interval]))", "dead-lettered {{sink}} {{reason}}")], 0, 43),
    series("Latency p50/p99", "Processing (message received to offset stored) and end-to-end (event time to alert delivered) latency.",
           [(f"histogram_quantile(0.99, sum by (le) (rate(ccwatch_processing_latency_seconds_bucket{sel()}[$__rate_interval])))", "processing p99"),
            (f"histogram_quantile(0.5, sum by (le) (rate(ccwatch_processing_latency_seconds_bucket{sel()}[$__rate_interval])))", "processing p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(ccwatch_end_to_end_latency_seconds_bucket{sel()}[$__rate_interval])))", "end-to-end p99")], 12, 43, unit="s"),
    row("State", 51),
    series("Correlation state", "Entries held in bounded state, and alerts and records waiting.",
           [(f"sum(ccwatch_state_users{sel()})", "users"), (f"sum(ccwatch_state_pairs{sel()})", "pairs"),
            (f"sum(ccwatch_state_ips{sel()})", "ips"), (f"sum(ccwatch_sessions_open{sel()})", "sessions"),
            (f"sum(ccwatch_open_alerts{sel()})", "open alerts"), (f"sum(ccwatch_pending_records{sel()})", "pending records")], 0, 52),
    series("Evictions and ordering", "Evictions from bounded state, late and forced records, offset problems, per second.",
           [(f"sum by (kind) (rate(ccwatch_state_evictions_total{sel()}[$__rate_interval]))", "evicted {{kind}}"),
            (f"sum(rate(ccwatch_out_of_order_total{sel()}[$__rate_interval]))", "out of order"),
            (f"sum(rate(ccwatch_forced_releases_total{sel()}[$__rate_interval]))", "forced releases"),
            (f"sum(rate(ccwatch_offset_store_failures_total{sel()}[$__rate_interval]))", "offset store failures"),
            (f"sum(rate(ccwatch_offset_gap_offsets_total{sel()}[$__rate_interval]))", "offset gaps"),
            (f"sum(rate(ccwatch_warmup_records_total{sel()}[$__rate_interval]))", "warm-up records")], 12, 52),
    series("Process CPU and memory", "CPU seconds per second and resident memory of each instance.",
           [(f"rate(process_cpu_seconds_total{sel()}[$__rate_interval])", "cpu {{instance}}"),
            (f"process_resident_memory_bytes{sel()} / 1e6", "RSS MB {{instance}}")], 0, 60),
    series("Build", "ccwatch_build_info of each instance: the version it runs.",
           [(f"ccwatch_build_info{sel()}", "{{instance}} {{version}} {{profile}}")], 12, 60),
]

dashboard = {
    "title": "ccwatch",
    "uid": "ccwatch",
    "description": "ccwatch: client-credentials detections, intake, delivery and state.",
    "schemaVersion": 39,
    "version": 2,
    "time": {"from": "now-24h", "to": "now"},
    "refresh": "30s",
    "tags": ["ccwatch", "salesforce", "security"],
    "templating": {
        "list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "job", "label": "job", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(ccwatch_build_info, job)", "refId": "job"}, "definition": "label_values(ccwatch_build_info, job)",
             "includeAll": True, "multi": True, "allValue": ".+", "current": {"text": "All", "value": "$__all"}, "refresh": 2},
            {"name": "instance", "label": "instance", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": 'label_values(ccwatch_build_info{job=~"$job"}, instance)', "refId": "instance"},
             "definition": 'label_values(ccwatch_build_info{job=~"$job"}, instance)',
             "includeAll": True, "multi": True, "allValue": ".+", "current": {"text": "All", "value": "$__all"}, "refresh": 2},
        ]
    },
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ccwatch.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print(f"wrote {out}: {sum(1 for p in panels if p['type'] != 'row')} panels")
