"""Operators' alerts from Grafana: ``POST /hooks/grafana``, and the ones the fleet page shows.

Grafana's contact point ``edgeloop-operators`` (compose/grafana/provisioning/alerting) sends
the gateways' alerts here with ``Authorization: Bearer <EDGELOOP_WEBHOOK_SECRET>``. The
console keeps the firing ones in memory until Grafana says they are resolved: after a
console restart they come back with Grafana's next repeat (every 30 minutes while firing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeloop.platform.grafana_alerts import (
    BadPayload,
    GrafanaAlert,
    bearer_matches,
    parse_notification,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)
PATH = "/hooks/grafana"
MAX_BODY = 1024 * 1024
MAX_FIRING = 500
"""Most firing alerts kept; beyond it the oldest give way (a misrouted flood cannot grow
the console without bound)."""


@dataclass(frozen=True)
class ShownAlert:
    """A firing alert as the fleet page lists it."""

    name: str
    fingerprint: str
    since: datetime | None
    summary: str
    gateway: str


def _moment(text: str) -> datetime | None:
    # Grafana writes RFC 3339 with up to nanoseconds; fromisoformat reads microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shown(alert: GrafanaAlert) -> ShownAlert:
    return ShownAlert(name=alert.name, fingerprint=alert.fingerprint,
                      since=_moment(alert.starts_at),
                      summary=alert.annotations.get("summary", ""),
                      gateway=alert.labels.get("gateway", ""))


class AlertBoard:
    """The firing alerts, by fingerprint, as Grafana last told of them."""

    def __init__(self, limit: int = MAX_FIRING) -> None:
        self.limit = limit
        self._firing: dict[str, ShownAlert] = {}

    def receive(self, alerts: Iterable[GrafanaAlert]) -> None:
        """Take a notification's alerts: a firing one is shown, a resolved one leaves."""
        for alert in alerts:
            if alert.firing:
                self._firing.pop(alert.fingerprint, None)  # the newest news last
                self._firing[alert.fingerprint] = _shown(alert)
            else:
                self._firing.pop(alert.fingerprint, None)
        while len(self._firing) > self.limit:
            del self._firing[next(iter(self._firing))]

    def firing(self) -> list[ShownAlert]:
        """The firing alerts, the longest-firing first."""
        return sorted(self._firing.values(),
                      key=lambda a: (a.since is None, a.since.timestamp() if a.since else 0,
                                     a.name, a.gateway))


def board(request: Request) -> AlertBoard:
    """The application's alert board."""
    return request.app.state.alerts


async def grafana_hook(request: Request) -> Response:
    """Authenticate, parse, and update the board; 401, 413 or 400 say what was wrong."""
    secret = request.app.state.settings.webhook_secret
    if not bearer_matches(request.headers.get("Authorization", ""), secret):
        return JSONResponse({"error": "missing or wrong bearer secret"
                             if secret else "EDGELOOP_WEBHOOK_SECRET is not set: "
                             "the console takes no alerts"}, status_code=401)
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
    try:
        alerts = parse_notification(json.loads(body))
    except (ValueError, BadPayload) as exc:
        return JSONResponse({"error": f"malformed Grafana payload: {exc}"}, status_code=400)
    board(request).receive(alerts)
    for alert in alerts:
        log.info("operator alert %s", alert.status, extra={
            "alertname": alert.name, "gateway": alert.labels.get("gateway", ""),
            "fingerprint": alert.fingerprint})
    return JSONResponse({"firing": len(board(request).firing())})
