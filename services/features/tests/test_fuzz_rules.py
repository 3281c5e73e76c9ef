"""Fuzzing the drift rules file (Hypothesis): arbitrary bytes, YAML and mutated rules.

The features service reads the file with :func:`load_rules` at start and refuses to start
on a :class:`RulesError`. Property: whatever the file holds, ``load_rules`` returns a
valid rule set or raises ``RulesError`` naming the file and where the problem is (a rule
and field, a top-level field, or the file as a whole) — never another exception.
Examples are derandomized and few.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from edgeloop.features.drift.rules import RulesError, RuleSet, default_rules_path, load_rules
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SHIPPED = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
rule_fields = st.sampled_from(["name", "kind", "signal", "statistic", "window", "min_samples",
                               "threshold", "pending", "cooldown", "description", "band",
                               "max", "unknown_field"])


@st.composite
def mutated_rules(draw: Any) -> Any:
    """The shipped rules with some fields of some rules replaced, removed or added."""
    data = copy.deepcopy(SHIPPED)
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(["rule", "rule", "top"]))
        if target == "top":
            data[draw(st.sampled_from(["version", "interval", "rules", "extra"]))] = draw(values)
            continue
        if not isinstance(data.get("rules"), list) or not data["rules"]:
            continue
        rule = data["rules"][draw(st.integers(0, len(data["rules"]) - 1))]
        field = draw(rule_fields)
        if draw(st.booleans()) and field in rule:
            del rule[field]
        elif field == "threshold":
            rule[field] = draw(st.one_of(values, st.fixed_dictionaries(
                {}, optional={"band": st.lists(st.floats(), max_size=3),
                              "max": st.floats(), "follow_reference": st.booleans()})))
        else:
            rule[field] = draw(values)
    return data


def _write(content: bytes) -> Path:
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as handle:
        handle.write(content)
    return Path(handle.name)


def check_rules_file(content: bytes) -> None:
    path = _write(content)
    try:
        try:
            rules = load_rules(path)
        except RulesError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: "), message
            where = message.removeprefix(f"{path}: ")
            assert where.startswith(("rule ", "field ", "file", "cannot read")), message
            return
        assert isinstance(rules, RuleSet) and len(rules.rules) >= 1
    finally:
        path.unlink()


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    values.map(lambda v: yaml.safe_dump(v).encode()),
    mutated_rules().map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
))
@example(b"\xff\xfe not utf-8")  # found by this test: a UnicodeDecodeError escaped
@example(b"version: 1\ninterval: 1m\nrules: [{name: a, window: -5m}]\n")
@example(yaml.safe_dump(SHIPPED).encode())
def test_any_rules_file_loads_or_is_refused_naming_the_field(content: bytes) -> None:
    check_rules_file(content)
