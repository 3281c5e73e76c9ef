"""The console's writes: login/logout, devices, deployments' strategy, model aliases.

Each write checks the login and CSRF token first (:mod:`edgeloop.console.auth`), then
calls the registry with the logged-in operator's own token (recorded as
``operator:<name>``), or with the admin token and ``x-edgeloop-actor: <name>@console``
(recorded as ``admin (on behalf of <name>@console)``), so the registry's history says who
made the change. The outcome comes back to the page it was made on as a one-line message.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import grpc
from edgeloop.console import auth
from edgeloop.console.backends import Writer, rpc_error_text
from edgeloop.console.rendering import page
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import operator_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

log = logging.getLogger(__name__)
STRATEGIES = {"direct": dpb.STRATEGY_DIRECT, "shadow": dpb.STRATEGY_SHADOW,
              "canary": dpb.STRATEGY_CANARY, "ab": dpb.STRATEGY_AB, "bandit": dpb.STRATEGY_BANDIT}


class InvalidField(ValueError):
    """A form field is invalid; the message names it."""


def _writer(request: Request) -> Writer:
    state = request.app.state
    key = auth.operator_token_key(request)
    if key is None:
        return Writer(state.backends.registry, state.settings.admin_token, auth.actor(request))
    token = state.operator_tokens.token(key)
    if token is None:  # the console restarted, or the session outlived the kept token
        auth.log_out(request)
        raise auth.NotLoggedIn()
    return Writer(state.backends.registry, token)


def _back(request: Request, fallback: str, message: str) -> RedirectResponse:
    target = request.query_params.get("back") or fallback
    if not target.startswith("/") or target.startswith("//"):
        target = fallback
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}flash={quote(message)}", status_code=303)


async def login_form(request: Request) -> Response:
    return page(request, "login.html", error=None, back=request.query_params.get("back", "/"))


async def login(request: Request) -> Response:
    """Log in with the admin token and a name, or with an admin operator's own token."""
    form = await request.form()
    name, token = str(form.get("name", "")), str(form.get("token", ""))
    back = str(form.get("back", "/"))
    state = request.app.state
    if auth.check_password(token, state.settings.admin_token):
        auth.log_in(request, name)
    else:
        caller = await state.backends.who_is(token) if _sendable(token) else None
        if caller is None:
            log.warning("console login refused", extra={"operator": auth.operator_name(name)})
            return page(request, "login.html", status_code=401, back=back,
                        error="wrong token: give the registry's admin token or your own "
                              "operator token")
        if caller.role != operator_pb2.OPERATOR_ROLE_ADMIN:
            log.warning("console login refused: the token only reads",
                        extra={"operator": caller.actor})
            return page(request, "login.html", status_code=403, back=back,
                        error=f"{caller.actor} only reads: changes need the admin token or "
                              "an admin operator's token")
        auth.log_in_operator(request, caller.actor, state.operator_tokens.keep(token))
    log.info("console login", extra={"operator": auth.operator(request)})
    safe = back if back.startswith("/") and not back.startswith("//") else "/"
    return RedirectResponse(safe, status_code=303)


def _sendable(token: str) -> bool:
    """Whether ``token`` can travel as gRPC metadata (printable ASCII, no spaces)."""
    return 0 < len(token) <= 512 and token.isascii() and token.isprintable() and " " not in token


async def logout(request: Request) -> Response:
    await auth.require_write(request)
    key = auth.operator_token_key(request)
    if key is not None:
        request.app.state.operator_tokens.forget(key)
    auth.log_out(request)
    return RedirectResponse("/", status_code=303)


def _selector(text: str, field: str) -> dpb.VersionSelector:
    text = text.strip()
    if text == "latest":
        return dpb.VersionSelector(latest=True)
    if text.startswith("@") and len(text) > 1:
        return dpb.VersionSelector(alias=text[1:])
    if text.isdigit():
        return dpb.VersionSelector(version=text)
    raise InvalidField(f"{field}: use a version number, @alias or latest (got {text!r})")


async def revoke_device(request: Request) -> Response:
    await auth.require_write(request)
    device_id = request.path_params["device_id"]
    await _writer(request).call("RevokeDevice", rpb.RevokeDeviceRequest(device_id=device_id))
    return _back(request, "/fleet", f"revoked {device_id}")


async def rotate_device(request: Request) -> Response:
    """A new token for a device, shown once on the page that answers the POST."""
    await auth.require_write(request)
    device_id = request.path_params["device_id"]
    reply = await _writer(request).call("RotateDeviceToken",
                                        rpb.RotateDeviceTokenRequest(device_id=device_id))
    return page(request, "token.html", device=reply.device, token=reply.token)


async def assign_device(request: Request) -> Response:
    form = await auth.require_write(request)
    device_id = request.path_params["device_id"]
    target = form.get("deployment", "")
    await _writer(request).call("AssignDevices", rpb.AssignDevicesRequest(
        deployment=target, device_ids=[device_id]))
    return _back(request, "/fleet", f"{device_id} → {target or '(none)'}")


async def change_strategy(request: Request) -> Response:
    """Strategy, selector, challenger and canary share of a deployment (revision-checked)."""
    form = await auth.require_write(request)
    name = request.path_params["name"]
    current = await request.app.state.backends.deployment(name)
    strategy = form.get("strategy", "")
    if strategy not in STRATEGIES:
        raise InvalidField(f"strategy: one of {', '.join(STRATEGIES)}")
    updated = dpb.Deployment()
    updated.CopyFrom(current)
    updated.ClearField("resolved")
    updated.strategy = STRATEGIES[strategy]
    updated.selector.CopyFrom(_selector(form.get("selector", ""), "selector"))
    challenger = form.get("challenger", "").strip()
    if challenger:
        updated.challenger.CopyFrom(_selector(challenger, "challenger"))
    else:
        updated.ClearField("challenger")
    try:
        updated.canary_fraction = float(form.get("canary_fraction") or 0)
    except ValueError as exc:
        raise InvalidField("canary_fraction: a number between 0 and 1") from exc
    await _writer(request).call("UpdateDeployment", rpb.UpdateDeploymentRequest(
        deployment=updated, expected_revision=int(form.get("revision") or 0)))
    return _back(request, f"/deployments/{name}", f"{name}: strategy {strategy}")


async def promote(request: Request) -> Response:
    """Move an alias to a version through the registry's gate (or past it with force)."""
    form = await auth.require_write(request)
    model = request.path_params["model"]
    version = form.get("version", "")
    if not version.isdigit():
        raise InvalidField("version: a version number")
    reply = await _writer(request).call("PromoteModelVersion", rpb.PromoteModelVersionRequest(
        model_name=model, version=version, alias=form.get("alias") or "champion",
        force=form.get("force") == "on"))
    verdict = "promoted" if reply.promoted else "refused"
    return _back(request, "/models", f"{model} v{version} {verdict}: {reply.reason}")


async def rollback(request: Request) -> Response:
    form = await auth.require_write(request)
    model = request.path_params["model"]
    alias = form.get("alias") or "champion"
    reply = await _writer(request).call("RollbackModel",
                                        rpb.RollbackModelRequest(model_name=model, alias=alias))
    return _back(request, "/models", f"{model}@{alias}: v{reply.rolled_back_from} → "
                 f"v{reply.version.version}")


async def not_logged_in(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", status_code=401,
                message="log in (the admin token, or your admin operator token) to change "
                        "anything")


async def bad_csrf(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", status_code=403,
                message="the form is stale or was not sent by the console (CSRF token); "
                        "reload the page and try again")


async def invalid_field(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", status_code=400, message=str(exc))


async def registry_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.RpcError)
    log.warning("registry refused a console write", extra={"error": rpc_error_text(exc)})
    return page(request, "error.html", status_code=409, message=rpc_error_text(exc))
