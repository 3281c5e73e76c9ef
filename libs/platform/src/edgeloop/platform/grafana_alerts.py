"""Grafana's webhook notifications: the alerts a payload carries, and its bearer secret.

Grafana's webhook contact point POSTs ``{"status", "alerts": [{"status", "labels":
{"alertname", ...}, "annotations": {...}, "fingerprint", "startsAt", "endsAt", ...}],
...}`` with the configured ``Authorization: Bearer <secret>``. Two services take such
notifications: the trainer (drift alerts start sweeps) and the console (operators' alerts
about the gateways are shown on the fleet page).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FIRING = "firing"


class BadPayload(ValueError):
    """The body is not a Grafana alert notification."""


@dataclass(frozen=True)
class GrafanaAlert:
    """One alert of a notification."""

    status: str
    """``firing`` or ``resolved``."""
    fingerprint: str
    starts_at: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: str = ""

    @property
    def name(self) -> str:
        """The alert rule's title (label ``alertname``)."""
        return self.labels["alertname"]

    @property
    def firing(self) -> bool:
        """Whether the alert fires (rather than is resolved)."""
        return self.status == FIRING


def parse_notification(payload: Any) -> list[GrafanaAlert]:
    """Every alert of a webhook payload, firing or resolved.

    Raises :class:`BadPayload` naming the first field that is not as Grafana sends it.
    Strings with a NUL character are refused (PostgreSQL text cannot hold one).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadPayload("alerts: expected a list of alerts")
    return [_alert(i, alert) for i, alert in enumerate(payload["alerts"])]


def _alert(i: int, alert: Any) -> GrafanaAlert:
    if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
        raise BadPayload(f"alerts[{i}].labels: expected an object")
    for key in ("status", "fingerprint", "startsAt"):
        if not isinstance(alert.get(key), str) or not alert[key]:
            raise BadPayload(f"alerts[{i}].{key}: expected a non-empty string")
    name = alert["labels"].get("alertname")
    if not isinstance(name, str) or not name:
        raise BadPayload(f"alerts[{i}].labels.alertname: expected a non-empty string")
    annotations = alert.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise BadPayload(f"alerts[{i}].annotations: expected an object")
    ends_at = alert.get("endsAt") or ""
    if not isinstance(ends_at, str):
        raise BadPayload(f"alerts[{i}].endsAt: expected a string")
    labels = _texts(i, "labels", alert["labels"])
    parsed = GrafanaAlert(status=alert["status"], fingerprint=alert["fingerprint"],
                          starts_at=alert["startsAt"], labels=labels,
                          annotations=_texts(i, "annotations", annotations), ends_at=ends_at)
    for key, value in (("fingerprint", parsed.fingerprint), ("startsAt", parsed.starts_at),
                       ("endsAt", parsed.ends_at)):
        _refuse_nul(f"alerts[{i}].{key}", value)
    return parsed


def _texts(i: int, where: str, values: dict[Any, Any]) -> dict[str, str]:
    texts = {str(key): str(value) for key, value in values.items()}
    for key, value in texts.items():
        _refuse_nul(f"alerts[{i}].{where}.{key}", key + value)
    return texts


def _refuse_nul(where: str, value: str) -> None:
    if "\x00" in value:
        raise BadPayload(f"{where}: contains a NUL character")


def bearer_matches(authorization: str, secret: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <secret>``; never with no secret."""
    given = authorization.removeprefix("Bearer ").strip() if authorization.startswith(
        "Bearer ") else ""
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())
