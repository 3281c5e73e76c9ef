"""Templates, filters and the helpers every page uses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from edgeloop.console import auth
from edgeloop.console.backends import rpc_error_text, when
from edgeloop.console.summaries import DEVICE, RATE_WINDOW
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.gateway_status import clock_offset_text
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

log = logging.getLogger(__name__)
T = TypeVar("T")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _moment(value: Any) -> datetime | None:
    """A protobuf Timestamp, a datetime or Unix seconds (status files) as a datetime."""
    if isinstance(value, datetime) or value is None:
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return when(value)


def _time(value: Any) -> str:
    moment = _moment(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _ago(value: Any) -> str:
    moment = _moment(value)
    if moment is None:
        return "never"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < -5:  # stamped by a clock that is ahead (a robot's capture time)
        return "in the future"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _mm(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} mm"


def strategy_name(value: int) -> str:
    return deployment_pb2.Strategy.Name(value).removeprefix("STRATEGY_").lower()


def selector_text(selector: deployment_pb2.VersionSelector) -> str:
    kind = selector.WhichOneof("kind")
    if kind == "version":
        return f"v{selector.version}"
    if kind == "alias":
        return f"@{selector.alias}"
    return "latest" if kind == "latest" else "-"


def _sweep_state(value: int) -> str:
    return sweep_pb2.SweepState.Name(value).removeprefix("SWEEP_STATE_").lower()


def _event_state(value: int) -> str:
    return observation_pb2.DriftEventState.Name(value).removeprefix("DRIFT_EVENT_STATE_").lower()


def _drift_kind(value: int) -> str:
    return observation_pb2.DriftKind.Name(value).removeprefix("DRIFT_KIND_").lower()


TEMPLATES.env.filters.update(time=_time, ago=_ago, mm=_mm, strategy=strategy_name,
                             selector=selector_text, sweep_state=_sweep_state,
                             event_state=_event_state, drift_kind=_drift_kind,
                             clock_offset=clock_offset_text)
TEMPLATES.env.globals["rate_minutes"] = round(RATE_WINDOW.total_seconds() / 60)
TEMPLATES.env.globals["DEVICE_SOURCE"] = DEVICE


async def attempt(call: Awaitable[T], default: T, problems: list[str], what: str) -> T:
    """Await ``call``; on a gRPC error note it for the page's banner and return ``default``."""
    try:
        return await call
    except grpc.RpcError as exc:
        log.warning("read failed", extra={"what": what, "error": rpc_error_text(exc)})
        problems.append(f"{what}: {rpc_error_text(exc)}")
        return default


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the shared context (operator, CSRF token, links, refresh)."""
    state = request.app.state
    base = {"request": request, "operator": auth.operator(request),
            "csrf": auth.csrf_token(request), "links": state.links,
            "refresh_s": state.settings.refresh_s, "problems": [], "flash": None}
    base.update(context)
    return TEMPLATES.TemplateResponse(request, template, base, status_code=status_code)
