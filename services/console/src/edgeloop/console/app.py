"""The console's ASGI application: routes, sessions, static files, service clients."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from edgeloop.console import actions, alerts, auth, pages
from edgeloop.console.backends import Backends
from edgeloop.console.links import Links
from edgeloop.console.settings import Settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SESSION_MAX_AGE_S = 12 * 3600


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _home(request: Request) -> Response:
    return RedirectResponse("/fleet", status_code=303)


def _routes() -> list[Route | Mount]:
    post = ["POST"]
    return [
        Route("/", _home), Route("/healthz", _health),
        Route("/login", actions.login_form), Route("/login", actions.login, methods=post),
        Route("/logout", actions.logout, methods=post),
        Route("/fleet", pages.fleet),
        Route(alerts.PATH, alerts.grafana_hook, methods=post),
        Route("/devices/{device_id}/revoke", actions.revoke_device, methods=post),
        Route("/devices/{device_id}/rotate", actions.rotate_device, methods=post),
        Route("/devices/{device_id}/assign", actions.assign_device, methods=post),
        Route("/deployments", pages.deployments),
        Route("/deployments/{name}", pages.deployment),
        Route("/deployments/{name}/strategy", actions.change_strategy, methods=post),
        Route("/drift", pages.drift_index),
        Route("/drift/{name}", pages.drift),
        Route("/drift/{name}/timeline.json", pages.drift_timeline),
        Route("/models", pages.models),
        Route("/models/{model}/promote", actions.promote, methods=post),
        Route("/models/{model}/rollback", actions.rollback, methods=post),
        Route("/models/{model}/{version}", pages.version),
        Route("/sweeps/{sweep_id}", pages.sweep),
        Route("/frames", pages.frames),
        Route("/frames/{observation_id}", pages.frame),
        Route("/frames/{observation_id}/image.jpg", pages.frame_image),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]


def build_app(settings: Settings) -> Starlette:
    """The console for ``settings``; service channels open at start-up, close at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.backends = Backends(settings.registry_addr, settings.features_addr,
                                      settings.trainer_addr, settings.read_token,
                                      settings.client_tls())
        try:
            yield
        finally:
            await app.state.backends.close()

    app = Starlette(
        routes=_routes(), lifespan=lifespan,
        middleware=[Middleware(SessionMiddleware,
                               secret_key=settings.session_secret or secrets.token_urlsafe(32),
                               session_cookie="edgeloop_console", max_age=SESSION_MAX_AGE_S,
                               same_site="strict", https_only=False)],
        exception_handlers={auth.NotLoggedIn: actions.not_logged_in,
                            auth.BadCsrf: actions.bad_csrf,
                            actions.InvalidField: actions.invalid_field,
                            grpc.RpcError: actions.registry_refused})
    app.state.settings = settings
    app.state.operator_tokens = auth.OperatorTokens(SESSION_MAX_AGE_S)
    app.state.alerts = alerts.AlertBoard(
        path=Path(settings.alerts_file) if settings.alerts_file else None)
    app.state.links = Links(settings.mlflow_ui_url, settings.ray_dashboard_url,
                            settings.jaeger_url, settings.grafana_url)
    return app
