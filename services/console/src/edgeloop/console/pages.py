"""The read-only pages: Fleet, Deployments, Drift, Sweeps and models, One frame."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
from edgeloop.console.alerts import board
from edgeloop.console.backends import Backends, rpc_error_text
from edgeloop.console.gateways import (
    TREND_POINTS,
    TREND_WINDOW,
    gateway_trends,
    read_gateway_spools,
    sampled_only,
)
from edgeloop.console.lineage_graph import lineage_graph
from edgeloop.console.rendering import attempt, page
from edgeloop.console.spans import flatten, span_tree
from edgeloop.console.summaries import RATE_WINDOW, arm_traffic, device_activity, robots_by_runs
from edgeloop.console.timeline import STATISTICS, timeline
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

NEWEST_FRAMES = 30
NEWEST_WITHIN = timedelta(minutes=2)
"""The frames page lists the newest frames of the last two minutes."""


def _backends(request: Request) -> Backends:
    return request.app.state.backends


async def fleet(request: Request) -> Response:
    """Operators' alerts firing; devices: deployment, online, last contact, frames/min, live
    MAE; revoke/rotate/assign; the gateways' spools."""
    backends, problems = _backends(request), []
    devices = await attempt(backends.devices(), [], problems, "registry")
    deployments = await attempt(backends.deployments(), [], problems, "registry")
    recent = await attempt(backends.traffic(RATE_WINDOW), fpb.SummarizeTrafficResponse(),
                           problems, "features")
    spools = await read_gateway_spools(request.app.state.settings.spool_folders)
    trends = gateway_trends(await attempt(backends.gateway_samples(TREND_WINDOW, TREND_POINTS),
                                          [], problems, "features"))
    template = "fleet_table.html" if request.headers.get("hx-request") else "fleet.html"
    return page(request, template, devices=devices, deployments=deployments,
                activity=device_activity(recent.devices,
                                         [g.status for g in spools if g.status is not None]),
                spools=spools, trends=trends, remote=sampled_only(spools, trends),
                alerts=board(request).firing(), problems=problems,
                token=request.query_params.get("token_for"))


async def deployments(request: Request) -> Response:
    """Every deployment with its strategy and what its arms resolve to."""
    backends, problems = _backends(request), []
    found = await attempt(backends.deployments(), [], problems, "registry")
    return page(request, "deployments.html", deployments=found, problems=problems)


async def deployment(request: Request) -> Response:
    """One deployment: arms, traffic and error per arm, versions to promote, history."""
    backends, problems = _backends(request), []
    name = request.path_params["name"]
    try:
        found = await backends.deployment(name)
    except grpc.RpcError as exc:
        return page(request, "error.html", status_code=404, message=rpc_error_text(exc))
    versions = await attempt(backends.versions(found.model_name), [], problems, "registry") \
        if found.model_name else []
    recent = await attempt(backends.traffic(RATE_WINDOW, [name]),
                           fpb.SummarizeTrafficResponse(), problems, "features")
    history = await attempt(backends.history(f"deployment/{name}", 30), [], problems, "registry")
    if found.model_name:
        history += await attempt(backends.history(f"model/{found.model_name}", 30), [], problems,
                                 "registry")
    history.sort(key=lambda r: r.change_id, reverse=True)
    template = "deployment_live.html" if request.headers.get("hx-request") else "deployment.html"
    return page(request, template, d=found, versions=versions, traffic=arm_traffic(recent.arms),
                robots=robots_by_runs(recent.devices), history=history, problems=problems,
                flash=request.query_params.get("flash"))


async def drift_index(request: Request) -> Response:
    """Redirect to the first active deployment's drift page (or list none)."""
    backends, problems = _backends(request), []
    found = await attempt(backends.deployments(), [], problems, "registry")
    active = [d for d in found if d.active] or found
    if active:
        return RedirectResponse(f"/drift/{active[0].name}", status_code=303)
    return page(request, "drift.html", d=None, deployments=[], states=[], events=[],
                statistics=STATISTICS, statistic="saturation", problems=problems)


async def drift(request: Request) -> Response:
    """One deployment's live drift timeline, rule states and events."""
    backends, problems = _backends(request), []
    name = request.path_params["name"]
    found = await attempt(backends.deployments(), [], problems, "registry")
    states = await attempt(backends.rule_states(name), [], problems, "features")
    events = await attempt(backends.drift_events(name, 50), [], problems, "features")
    template = "drift_live.html" if request.headers.get("hx-request") else "drift.html"
    return page(request, template, d=name, deployments=found, states=states, events=events,
                statistics=STATISTICS, problems=problems,
                statistic=request.query_params.get("statistic", "saturation"))


async def drift_timeline(request: Request) -> Response:
    """The timeline's data as JSON for the plot."""
    settings = request.app.state.settings
    statistic = request.query_params.get("statistic", "saturation")
    try:
        data = await timeline(_backends(request), request.path_params["name"], statistic,
                              settings.timeline_minutes, settings.timeline_points)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except grpc.RpcError as exc:
        return JSONResponse({"error": rpc_error_text(exc)}, status_code=502)
    return JSONResponse(data)


async def models(request: Request) -> Response:
    """Sweeps with live trial progress, and each model's versions with holdout MAE."""
    backends, problems = _backends(request), []
    sweeps = await attempt(backends.sweeps(), [], problems, "trainer")
    found = await attempt(backends.deployments(), [], problems, "registry")
    names = sorted({d.model_name for d in found if d.model_name} | {s.model_name for s in sweeps})
    versions = {}
    for name in names:
        versions[name] = await attempt(backends.versions(name), [], problems, "registry")
    template = "models_live.html" if request.headers.get("hx-request") else "models.html"
    return page(request, template, sweeps=sweeps, versions=versions, problems=problems,
                trainer=bool(request.app.state.settings.trainer_addr))


async def sweep(request: Request) -> Response:
    """One sweep: state, trials with their curves' best values, links to MLflow/Ray/Jaeger."""
    backends = _backends(request)
    try:
        found = await backends.sweep(request.path_params["sweep_id"])
    except grpc.RpcError as exc:
        return page(request, "error.html", status_code=404, message=rpc_error_text(exc))
    if found is None:
        return page(request, "error.html", status_code=404, message="no trainer configured")
    template = "sweep_live.html" if request.headers.get("hx-request") else "sweep.html"
    return page(request, template, s=found)


async def version(request: Request) -> Response:
    """A model version's lineage graph."""
    model, number = request.path_params["model"], request.path_params["version"]
    try:
        graph = await lineage_graph(_backends(request), request.app.state.links, model, number)
    except grpc.RpcError as exc:
        return page(request, "error.html", status_code=404, message=rpc_error_text(exc))
    return page(request, "version.html", model=model, version=number, graph=graph)


async def frames(request: Request) -> Response:
    """The newest frames (to pick one), or the frame named by ?id=."""
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return RedirectResponse(f"/frames/{wanted}", status_code=303)
    backends, problems = _backends(request), []
    newest = await attempt(backends.observations(since=NEWEST_WITHIN, limit=NEWEST_FRAMES,
                                                 newest_first=True), [], problems, "features")
    return page(request, "frames.html", frames=newest, problems=problems)


async def frame(request: Request) -> Response:
    """One observation: image, statistics, prediction, label, error, version, span tree."""
    backends, problems = _backends(request), []
    observation_id = request.path_params["observation_id"]
    found = await attempt(backends.observations(ids=[observation_id]), [], problems, "features")
    if not found:
        return page(request, "error.html", status_code=404, problems=problems,
                    message=f"observation {observation_id} is not in the feature store")
    obs = found[0]
    folder = request.app.state.settings.trace_dir
    roots = await asyncio.to_thread(span_tree, Path(folder), obs.trace_id) if folder else []
    return page(request, "frame.html", o=obs, spans=flatten(roots), trace_dir=bool(folder),
                problems=problems)


async def frame_image(request: Request) -> Response:
    """The frame's JPEG, read through the features service from the object store."""
    try:
        found = await _backends(request).observations(ids=[request.path_params["observation_id"]],
                                                      include_jpeg=True)
    except grpc.RpcError as exc:
        return Response(rpc_error_text(exc), status_code=502, media_type="text/plain")
    if not found or not found[0].jpeg:
        return Response("no image", status_code=404, media_type="text/plain")
    return Response(found[0].jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "max-age=3600"})
