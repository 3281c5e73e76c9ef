"""Generate Grafana's alert rules from the drift rules file.

    uv run python compose/grafana/generate_alerts.py          # rewrite the alert rules
    uv run python compose/grafana/generate_alerts.py --check  # exit 1 if they are stale

The drift rules (``services/features/src/edgeloop/features/drift/rules.yaml``, loaded
with the features service's own loader) are the source of truth; this script writes
``provisioning/alerting/rules.yaml`` for Grafana's file provisioning. A rule becomes a
Grafana SQL alert when the database alone can compute it: ``window_mean`` rules read the
5-minute rollup ``features.observations_5m``. The others compare a window with the
model's training reference (``reference.json`` in the object store) or holdout MAE (in
MLflow), which SQL cannot reach; the features drift monitor evaluates them, and the
generated file lists them in its header so nobody looks for them in Grafana.

Each generated rule returns one row per deployment with string columns ``deployment``
and ``model`` (they become alert labels; the trainer's webhook reads both to choose
the data and the model of the sweep) and the numeric ``value``; a threshold expression
fires outside the rule's band, after the rule's pending period (``for``).

The output holds no ``$``: Grafana interpolates environment variables in provisioning
files, which would eat ``$labels``-style template references and SQL macros.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from edgeloop.features.drift import Rule, RuleSet, format_duration, load_rules

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "provisioning" / "alerting" / "rules.yaml"
RULES_SOURCE = "services/features/src/edgeloop/features/drift/rules.yaml"
DATASOURCE_UID = "edgeloop-timescaledb"
FOLDER = "edgeloop"
GROUP = "edgeloop-drift"
ROLLUP = "features.observations_5m"
ROLLUP_WIDTH = timedelta(minutes=5)
SCHEDULER_STEP_S = 10
"""Grafana evaluates rule groups on multiples of its 10-second scheduler tick."""
MODEL_LOOKBACK = "10 minutes"
"""How far back the ``model`` label looks for the deployment's latest model name."""
VALUE_TEMPLATE = '{{ printf "%.1f" (index .Values "A").Value }}'
"""Query A's value in an annotation, without ``$`` (see the module docstring)."""
SKIPPED_BECAUSE = {
    "js_distance": "needs the training reference histograms (reference.json)",
    "out_of_range_share": "needs the trained label range (reference.json)",
    "mae_ratio": "needs the model's holdout MAE (MLflow / reference.json)",
    "cusum": "sequential (CUSUM) over single observations against reference.json",
}


def sql_interval(value: timedelta) -> str:
    """A PostgreSQL interval literal for ``value``."""
    return f"INTERVAL '{int(value.total_seconds())} seconds'"


def group_interval(rules: RuleSet) -> str:
    """The rules file's evaluation interval, rounded up to Grafana's scheduler tick."""
    seconds = max(SCHEDULER_STEP_S, math.ceil(rules.interval.total_seconds() / SCHEDULER_STEP_S)
                  * SCHEDULER_STEP_S)
    return format_duration(timedelta(seconds=seconds))


def window_mean_sql(rule: Rule) -> str:
    """One row per deployment: its model and the rule's statistic averaged over the window.

    The window is made of the rollup's whole buckets that overlap ``[now - window, now]``
    (as the features service's GetWindowStats counts them); the bucket means are weighted
    by their observation counts, so the result is the mean of the observations.
    """
    column = f"avg_{rule.statistic}"
    count = "labelled_count" if rule.statistic == "sensor_mm" else "observation_count"
    if rule.statistic == "prediction_mm":
        count = "predicted_count"
    since = f"now() - {sql_interval(rule.window)} - {sql_interval(ROLLUP_WIDTH)}"
    return (
        "SELECT w.deployment,\n"
        "       coalesce((SELECT o.model_name FROM features.observations AS o\n"
        "                 WHERE o.deployment = w.deployment\n"
        f"                   AND o.time >= now() - INTERVAL '{MODEL_LOOKBACK}'\n"
        "                   AND o.model_name <> ''\n"
        "                 ORDER BY o.time DESC LIMIT 1), '') AS model,\n"
        "       w.value\n"
        f"FROM (SELECT deployment, sum({column} * {count}) / sum({count}) AS value\n"
        f"      FROM {ROLLUP}\n"
        f"      WHERE bucket > {since}\n"
        "      GROUP BY deployment\n"
        f"      HAVING sum({count}) >= {rule.min_samples}) AS w\n"
        "ORDER BY w.deployment"
    )


def threshold_model(rule: Rule) -> dict[str, Any]:
    """Grafana's threshold expression C over query A for the rule's band."""
    lo, hi = rule.threshold.band or (0.0, 0.0)
    return {
        "refId": "C", "type": "threshold", "expression": "A",
        "datasource": {"type": "__expr__", "uid": "__expr__"},
        "conditions": [{"type": "query", "evaluator": {"type": "outside_range", "params": [lo, hi]},
                        "operator": {"type": "and"}, "query": {"params": ["C"]},
                        "reducer": {"type": "last", "params": []}}],
    }


def alert_rule(rule: Rule) -> dict[str, Any]:
    """The Grafana alert rule (file provisioning format) for a ``window_mean`` rule."""
    lo, hi = rule.threshold.band or (0.0, 0.0)
    lookback = int((rule.window + ROLLUP_WIDTH).total_seconds())
    query = {"refId": "A", "datasource": {"type": "grafana-postgresql-datasource",
                                          "uid": DATASOURCE_UID},
             "editorMode": "code", "format": "table", "rawQuery": True,
             "rawSql": window_mean_sql(rule), "intervalMs": 1000, "maxDataPoints": 43200}
    return {
        "uid": f"edgeloop-{rule.name.replace('_', '-')}"[:40],
        "title": rule.name,
        "condition": "C",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": lookback, "to": 0},
             "datasourceUid": DATASOURCE_UID, "model": query},
            {"refId": "C", "relativeTimeRange": {"from": 0, "to": 0},
             "datasourceUid": "__expr__", "model": threshold_model(rule)},
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": format_duration(rule.pending),
        "annotations": {
            "summary": (f"{{{{ .Labels.deployment }}}}: {format_duration(rule.window)} mean "
                        f"{rule.statistic} {VALUE_TEMPLATE} is outside [{lo:g}, {hi:g}]"),
            "description": rule.description,
            "cooldown": format_duration(rule.cooldown),
        },
        "labels": {"rule": rule.name, "kind": rule.kind, "source": "edgeloop-drift-rules"},
        "isPaused": False,
    }


def expressible(rule: Rule) -> bool:
    """Whether SQL over the database alone can evaluate ``rule``."""
    return rule.signal == "window_mean"


def build(rules: RuleSet) -> dict[str, Any]:
    """The alerting provisioning document for ``rules``."""
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": GROUP, "folder": FOLDER, "interval": group_interval(rules),
        "rules": [alert_rule(rule) for rule in rules if expressible(rule)],
    }]}


def header(rules: RuleSet) -> str:
    """The generated file's comment: origin, and the rules left to the drift monitor."""
    lines = [f"# GENERATED by compose/grafana/generate_alerts.py from {RULES_SOURCE}.",
             "# Do not edit: change the rules file and run the script "
             "(a test fails when this file is stale).",
             "# Rules evaluated only by the features drift monitor (not expressible in SQL):"]
    lines += [f"#   {rule.name}: {SKIPPED_BECAUSE[rule.signal]}" for rule in rules
              if not expressible(rule)]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so the SQL reads as SQL."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(rules: RuleSet) -> str:
    """The text of ``provisioning/alerting/rules.yaml`` for ``rules``."""
    body = yaml.dump(build(rules), Dumper=_Dumper, sort_keys=False, width=100,
                     allow_unicode=True)
    return header(rules) + body


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the generated alert rules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=None, help="drift rules file "
                        "(default: the one shipped with the features service)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    text = render(load_rules(args.rules))
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run compose/grafana/generate_alerts.py",
                  file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
