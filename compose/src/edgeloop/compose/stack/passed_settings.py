"""A service's own settings through ``edgeloop up``: ``EDGELOOP_<PART>__<SETTING>``.

The topology gives each part only the variables it sets itself (a stray
``EDGELOOP_LISTEN_ADDR`` in the caller's shell must not leak into every part), so a
service's own settings need a way in that names the part:
``EDGELOOP_TRAINER__CARRIED_TRAIN_FRAMES=400 edgeloop up`` gives the trainer
``EDGELOOP_CARRIED_TRAIN_FRAMES=400``, and ``EDGELOOP_FEATURES__DRIFT_RETRAIN_CONSOLIDATE_FACTOR=0``
turns the monitor's consolidation off. ``up`` refuses, naming the variable, a part that does
not exist, a setting that part does not have, a value its settings would refuse, and a
variable the topology sets itself (addresses, tokens, folders: those move with the
topology's own variables). The values are recorded with the rest of a part's environment,
so a restarted part gets them again; parts already running keep what they started with
(``down``, then ``up``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

PREFIX = "EDGELOOP_"
SEPARATOR = "__"
PARTS = ("registry", "features", "trainer", "gateway", "console")
"""The parts that take settings this way: each has ``edgeloop.<part>.settings.Settings``."""


def passed_settings(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Per part, the ``EDGELOOP_*`` variables ``environ`` passes to it, checked against the
    part's settings; ValueError naming the variable otherwise."""
    found: dict[str, dict[str, str]] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(PREFIX) or SEPARATOR not in name:
            continue
        part, _, setting = name.removeprefix(PREFIX).partition(SEPARATOR)
        part, setting = part.lower(), setting.lower()
        if part not in PARTS:
            raise ValueError(f"{name}: {part!r} is not a part that takes settings "
                             f"({', '.join(PARTS)})")
        fields = _fields(part)
        if setting not in fields:
            raise ValueError(f"{name}: the {part} has no setting {PREFIX}{setting.upper()} "
                             f"(see its README's configuration table)")
        _check_value(name, fields[setting], value)
        found.setdefault(part, {})[f"{PREFIX}{setting.upper()}"] = value
    return found


def with_passed(part: str, env: dict[str, str],
                passed: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """``env`` (what the topology gives ``part``) with the settings passed to it; ValueError
    when one of them is a variable the topology sets itself."""
    mine = passed.get(part, {})
    for name in mine:
        if name in env:
            raise ValueError(f"{PREFIX}{part.upper()}{SEPARATOR}{name.removeprefix(PREFIX)}: "
                             f"edgeloop up sets {name} itself")
    return {**env, **mine}


def _fields(part: str) -> dict[str, Any]:
    settings = importlib.import_module(f"edgeloop.{part}.settings").Settings
    return dict(settings.model_fields)


def _check_value(name: str, info: Any, value: str) -> None:
    kind = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    try:
        TypeAdapter(kind).validate_strings(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ValueError(f"{name}: {reason} (got {value!r})") from None
