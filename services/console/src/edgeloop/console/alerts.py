"""Operators' alerts from Grafana: ``POST /hooks/grafana``, and the ones the fleet page shows.

Grafana's contact point ``edgeloop-operators`` (compose/grafana/provisioning/alerting) sends
the gateways' alerts here with ``Authorization: Bearer <EDGELOOP_WEBHOOK_SECRET>``. The
console keeps the firing ones until Grafana says they are resolved, in memory and, with
``EDGELOOP_ALERTS_FILE``, in that file (JSON, replaced whole after each notification), read
back at start: without it a restarted console would show no alert until Grafana's next repeat
(every 30 minutes while one fires). A file that cannot be read starts an empty board, with a
log line; one that cannot be written leaves the board in memory, with a log line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def _record(alert: ShownAlert) -> dict[str, Any]:
    return {**asdict(alert), "since": alert.since.isoformat() if alert.since else None}


def _from_record(record: dict[str, Any]) -> ShownAlert:
    since = record.get("since")
    return ShownAlert(name=str(record["name"]), fingerprint=str(record["fingerprint"]),
                      since=_moment(since) if since else None,
                      summary=str(record.get("summary", "")),
                      gateway=str(record.get("gateway", "")))


def _shown(alert: GrafanaAlert) -> ShownAlert:
    return ShownAlert(name=alert.name, fingerprint=alert.fingerprint,
                      since=_moment(alert.starts_at),
                      summary=alert.annotations.get("summary", ""),
                      gateway=alert.labels.get("gateway", ""))


class AlertBoard:
    """The firing alerts, by fingerprint, as Grafana last told of them; kept in ``path`` too
    when given (read at start)."""

    def __init__(self, limit: int = MAX_FIRING, path: Path | None = None) -> None:
        self.limit = limit
        self.path = path
        self._firing: dict[str, ShownAlert] = self._read() if path else {}

    def _read(self) -> dict[str, ShownAlert]:
        assert self.path is not None
        try:
            records = json.loads(self.path.read_text())
            firing = {alert.fingerprint: alert for alert in map(_from_record, records)}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("alerts file unreadable; starting with no firing alert: %s", exc,
                        extra={"path": str(self.path)})
            return {}
        log.info("firing alerts read back", extra={"path": str(self.path),
                                                   "alerts": len(firing)})
        return firing

    def _write(self) -> None:
        assert self.path is not None
        staging = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging.write_text(json.dumps([_record(a) for a in self._firing.values()]))
            os.replace(staging, self.path)
        except OSError as exc:
            log.warning("alerts file not written; the board stays in memory: %s", exc,
                        extra={"path": str(self.path)})

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
        if self.path is not None:
            self._write()

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
