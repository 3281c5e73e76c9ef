"""Deployments: validation and storage of the unit of data collection and rollout.

The routing fields of a Deployment are stored as its JSON mapping (``spec``); name,
active flag, revision and time are columns. ``resolved`` is never stored: it is
computed from the model registry whenever deployments are read (see ``resolution``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.platform.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from edgeloop.registry import history
from edgeloop.registry.selectors import check_model_name, check_selector
from google.protobuf import json_format
from psycopg import AsyncConnection

Strategy = deployment_pb2.Strategy
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ARM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RESERVED_ARMS = {"none"}
UNASSIGNED = "unassigned"
"""The data group gateways use for devices with no deployment (not a deployment name)."""
_WITH_CHALLENGER = {Strategy.STRATEGY_SHADOW, Strategy.STRATEGY_CANARY, Strategy.STRATEGY_AB}
_SPEC_FIELDS = ("model_name", "selector", "data_group", "strategy", "challenger",
                "canary_fraction", "arms", "description", "device_shadow")


def check_name(name: str, field: str = "deployment.name") -> str:
    """``name`` if it is a valid deployment name, else INVALID_ARGUMENT naming ``field``."""
    if not NAME.match(name):
        raise InvalidArgument(field, f"{name!r} is not a deployment name "
                                     "(1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)")
    return name


def normalize(deployment: deployment_pb2.Deployment) -> deployment_pb2.Deployment:
    """A validated copy with defaults filled in (direct strategy, data group = name)."""
    spec = deployment_pb2.Deployment()
    spec.CopyFrom(deployment)
    spec.ClearField("resolved")
    check_name(spec.name)
    if spec.name == UNASSIGNED:
        raise InvalidArgument("deployment.name", f"{UNASSIGNED!r} is reserved: gateways record the "
                              "frames of devices with no deployment under it")
    if spec.strategy == Strategy.STRATEGY_UNSPECIFIED:
        spec.strategy = Strategy.STRATEGY_DIRECT
    if spec.strategy not in Strategy.values():
        raise InvalidArgument("deployment.strategy", f"unknown strategy {spec.strategy}")
    spec.data_group = spec.data_group or spec.name
    if len(spec.description) > 1000:
        raise InvalidArgument("deployment.description", "at most 1000 characters")
    if spec.model_name:
        check_model_name(spec.model_name, "deployment.model_name")
        _check_routing(spec)
    else:
        _check_no_model(spec)
    return spec


def _check_no_model(spec: deployment_pb2.Deployment) -> None:
    """A deployment without a model only collects data: nothing to route."""
    for field in ("selector", "challenger"):
        if spec.HasField(field):
            raise InvalidArgument(f"deployment.{field}", "needs deployment.model_name")
    if spec.arms:
        raise InvalidArgument("deployment.arms", "needs deployment.model_name")
    if spec.strategy != Strategy.STRATEGY_DIRECT or spec.canary_fraction:
        raise InvalidArgument("deployment.strategy", "a deployment without model_name is direct "
                                                     "(data collection only)")


def _check_routing(spec: deployment_pb2.Deployment) -> None:
    if spec.strategy == Strategy.STRATEGY_BANDIT:
        _check_arms(spec)
        return
    if spec.arms:
        raise InvalidArgument("deployment.arms", "only a bandit deployment has arms")
    check_selector(spec.selector, "deployment.selector", required=True)
    if spec.strategy in _WITH_CHALLENGER:
        check_selector(spec.challenger, "deployment.challenger", required=True)
    elif spec.HasField("challenger"):
        raise InvalidArgument("deployment.challenger",
                              "only shadow, canary and A/B use a challenger")
    if spec.strategy == Strategy.STRATEGY_CANARY:
        if not 0.0 < spec.canary_fraction < 1.0:
            raise InvalidArgument("deployment.canary_fraction", "must be between 0 and 1 "
                                  f"(exclusive), got {spec.canary_fraction}")
    elif spec.canary_fraction:
        raise InvalidArgument("deployment.canary_fraction", "only a canary deployment has one")


def _check_arms(spec: deployment_pb2.Deployment) -> None:
    if len(spec.arms) < 2:
        raise InvalidArgument("deployment.arms", "a bandit needs at least 2 arms")
    if spec.HasField("selector") or spec.HasField("challenger"):
        raise InvalidArgument("deployment.selector", "a bandit selects by its arms only")
    if spec.canary_fraction:
        raise InvalidArgument("deployment.canary_fraction", "only a canary deployment has one")
    seen: set[str] = set()
    for i, arm in enumerate(spec.arms):
        if not ARM_NAME.match(arm.name) or arm.name in RESERVED_ARMS:
            raise InvalidArgument(f"deployment.arms[{i}].name", f"{arm.name!r} is not an arm "
                                  "name (1-32 of a-z 0-9 _ -; not 'none')")
        if arm.name in seen:
            raise InvalidArgument(f"deployment.arms[{i}].name", f"duplicate arm {arm.name!r}")
        seen.add(arm.name)
        check_selector(arm.selector, f"deployment.arms[{i}].selector", required=True)


def _spec_json(spec: deployment_pb2.Deployment) -> str:
    message = deployment_pb2.Deployment()
    for field in _SPEC_FIELDS:
        value = getattr(spec, field)
        if field in ("selector", "challenger"):
            if spec.HasField(field):
                getattr(message, field).CopyFrom(value)
        elif field == "arms":
            message.arms.extend(value)
        else:
            setattr(message, field, value)
    return json.dumps(json_format.MessageToDict(message), sort_keys=True)


def from_row(row: dict[str, Any]) -> deployment_pb2.Deployment:
    """A ``deployments`` row as a Deployment (without ``resolved``)."""
    deployment = json_format.ParseDict(row["spec"], deployment_pb2.Deployment())
    deployment.name = row["name"]
    deployment.active = row["active"]
    deployment.revision = row["revision"]
    deployment.updated_at.FromDatetime(row["updated_at"])
    return deployment


_RETURNING = "RETURNING name, spec, active, revision, updated_at"


async def create(conn: AsyncConnection, actor: str,
                 deployment: deployment_pb2.Deployment) -> deployment_pb2.Deployment:
    """Store a new deployment (its ``active`` flag is taken as given)."""
    spec = normalize(deployment)
    cursor = await conn.execute(
        f"INSERT INTO deployments (name, spec, active) VALUES (%s, %s, %s) "
        f"ON CONFLICT (name) DO NOTHING {_RETURNING}", (spec.name, _spec_json(spec), spec.active))
    row = await cursor.fetchone()
    if row is None:
        raise AlreadyExists(f"deployment.name: a deployment {spec.name!r} exists already")
    stored = from_row(row)
    await history.record(conn, actor, f"deployment/{spec.name}", "create", _detail(stored))
    return stored


async def update(conn: AsyncConnection, actor: str, deployment: deployment_pb2.Deployment,
                 expected_revision: int) -> deployment_pb2.Deployment:
    """Replace a deployment's routing; ``expected_revision`` (if not 0) guards lost updates."""
    spec = normalize(deployment)
    cursor = await conn.execute(
        f"UPDATE deployments SET spec = %s, revision = revision + 1, updated_at = now() "
        f"WHERE name = %s AND (%s = 0 OR revision = %s) {_RETURNING}",
        (_spec_json(spec), spec.name, expected_revision, expected_revision))
    row = await cursor.fetchone()
    if row is None:
        current = await _get_row(conn, spec.name, "deployment.name")
        raise FailedPrecondition(f"expected_revision: deployment {spec.name!r} is at revision "
                                 f"{current['revision']}, not {expected_revision}; "
                                 "re-read and retry")
    stored = from_row(row)
    await history.record(conn, actor, f"deployment/{spec.name}", "update", _detail(stored))
    return stored


async def activate(conn: AsyncConnection, actor: str, name: str,
                   active: bool) -> deployment_pb2.Deployment:
    """Switch a deployment on or off."""
    check_name(name, "name")
    cursor = await conn.execute(
        f"UPDATE deployments SET active = %s, revision = revision + 1, updated_at = now() "
        f"WHERE name = %s {_RETURNING}", (active, name))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"name: no deployment {name!r}")
    await history.record(conn, actor, f"deployment/{name}",
                         "activate" if active else "deactivate", {"active": active})
    return from_row(row)


async def _get_row(conn: AsyncConnection, name: str, field: str) -> dict[str, Any]:
    cursor = await conn.execute(
        "SELECT name, spec, active, revision, updated_at FROM deployments WHERE name = %s", (name,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"{field}: no deployment {name!r}")
    return row


async def get(conn: AsyncConnection, name: str) -> deployment_pb2.Deployment:
    """One stored deployment."""
    return from_row(await _get_row(conn, check_name(name, "name"), "name"))


async def list_all(conn: AsyncConnection) -> list[deployment_pb2.Deployment]:
    """Every stored deployment, by name."""
    cursor = await conn.execute(
        "SELECT name, spec, active, revision, updated_at FROM deployments ORDER BY name")
    return [from_row(row) for row in await cursor.fetchall()]


def _detail(deployment: deployment_pb2.Deployment) -> dict[str, Any]:
    detail = json_format.MessageToDict(deployment)
    detail.pop("updatedAt", None)
    return detail
