"""``POST /hooks/grafana``: Grafana alert notifications start retraining sweeps.

Grafana's webhook contact point sends ``{"status", "alerts": [{"status", "labels":
{"alertname", ...}, "fingerprint", "startsAt", ...}], ...}`` with the configured
``Authorization: Bearer <secret>``. Each *firing* alert starts a sweep with trigger
``grafana:<alertname>``; alert labels ``model`` and ``deployment`` (when present) choose
the model and restrict the data; the sweep fine-tunes the model's champion (from scratch
when it has none that can be). Grafana repeats notifications of one alert while it
fires: an occurrence (fingerprint, startsAt) starts at most one sweep, remembered in
the database so restarts do not forget. With ``EDGELOOP_TLS_CERT``/``EDGELOOP_TLS_KEY``
set the webhook serves HTTPS only, with the trainer's gRPC certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.platform.errors import ConfigError, EdgeloopError, FailedPrecondition, NotFound
from edgeloop.platform.grafana_alerts import BadPayload, bearer_matches, parse_notification
from edgeloop.platform.tls import ServerTLS
from edgeloop.trainer.store import SweepStore

log = logging.getLogger(__name__)
PATH = "/hooks/grafana"
MAX_BODY = 1024 * 1024
WARM_START_ALIAS = "champion"
Submit = Callable[[trainer_service_pb2.StartSweepRequest], Awaitable[sweep_pb2.Sweep]]


def parse_alerts(payload: Any) -> list[dict[str, str]]:
    """The firing alerts of a payload: alertname, fingerprint, startsAt, model, deployment."""
    return [{"alertname": alert.name, "fingerprint": alert.fingerprint,
             "startsAt": alert.starts_at, "model": alert.labels.get("model", ""),
             "deployment": alert.labels.get("deployment", "")}
            for alert in parse_notification(payload) if alert.firing]


def sweep_request(alert: dict[str, str]) -> trainer_service_pb2.StartSweepRequest:
    """The sweep an alert asks for: its deployment's data, default search space, promotion on.

    It fine-tunes the model's champion (an alert names a model, not the version it saw; the
    champion is what serves by default), as the drift monitor's sweeps fine-tune theirs.
    """
    data = sweep_pb2.DataSelection(deployments=[alert["deployment"]] if alert["deployment"] else [])
    return trainer_service_pb2.StartSweepRequest(
        model_name=alert["model"],
        trigger=f"grafana:{alert['alertname']}",
        data=data,
        deployment=alert["deployment"],
        promote=True,
        warm_start=deployment_pb2.VersionSelector(alias=WARM_START_ALIAS),
    )


class GrafanaWebhook:
    """The aiohttp application and its server."""

    def __init__(self, store: SweepStore, submit: Submit, secret: str,
                 tls: ServerTLS | None = None) -> None:
        self.store = store
        self.submit = submit
        self.secret = secret
        self.tls = tls
        self.runner: web.AppRunner | None = None
        self.address = ""

    def app(self) -> web.Application:
        """The aiohttp application (one route)."""
        application = web.Application(client_max_size=MAX_BODY)
        application.router.add_post(PATH, self.handle)
        return application

    async def start(self, listen_addr: str) -> str:
        """Listen on ``listen_addr`` (port 0 picks one); returns the bound host:port."""
        host, _, port = listen_addr.rpartition(":")
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        # Same certificate as the gRPC port: with TLS configured the webhook is HTTPS only.
        site = web.TCPSite(self.runner, host or "127.0.0.1", int(port),
                           ssl_context=self.tls.ssl_context() if self.tls else None)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"EDGELOOP_WEBHOOK_ADDR: cannot listen on {listen_addr}: {exc}"
            ) from exc
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        self.address = f"{bound[0]}:{bound[1]}"
        log.info("webhook listening", extra={"address": self.address, "path": PATH,
                                             "https": self.tls is not None})
        return self.address

    async def stop(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        """Authenticate, parse, then start one sweep per new firing alert."""
        if not bearer_matches(request.headers.get("Authorization", ""), self.secret):
            return web.json_response({"error": "missing or wrong bearer secret"}, status=401)
        try:
            alerts = parse_alerts(await request.json())
        except (ValueError, BadPayload) as exc:
            return web.json_response({"error": f"malformed Grafana payload: {exc}"}, status=400)
        results = [await self._one(alert) for alert in alerts]
        return web.json_response({"results": results})

    async def _submit(self, request: trainer_service_pb2.StartSweepRequest) -> sweep_pb2.Sweep:
        """Start the sweep; without a champion that can be fine-tuned, from scratch."""
        try:
            return await self.submit(request)
        except (FailedPrecondition, NotFound) as exc:
            if not exc.message.startswith("warm_start"):
                raise
            log.info("alert's sweep trains from scratch: %s", exc.message,
                     extra={"model": request.model_name})
            request.ClearField("warm_start")
            return await self.submit(request)

    async def _one(self, alert: dict[str, str]) -> dict[str, str]:
        if not await self.store.claim_alert(
            alert["fingerprint"], alert["startsAt"], alert["alertname"]
        ):
            return {"alertname": alert["alertname"], "result": "duplicate"}
        try:
            sweep = await self._submit(sweep_request(alert))
        except EdgeloopError as exc:
            log.warning(
                "alert did not start a sweep: %s",
                exc.message,
                extra={"alertname": alert["alertname"], "fingerprint": alert["fingerprint"]},
            )
            # forget the occurrence so Grafana's next repeat can try again (e.g. more data)
            await self.store.release_alert(alert["fingerprint"], alert["startsAt"])
            return {"alertname": alert["alertname"], "result": "refused", "reason": exc.message}
        await self.store.link_alert(alert["fingerprint"], alert["startsAt"], sweep.sweep_id)
        log.info(
            "alert started a sweep",
            extra={"alertname": alert["alertname"], "sweep_id": sweep.sweep_id},
        )
        return {"alertname": alert["alertname"], "result": "started", "sweep_id": sweep.sweep_id}
