"""Model versions over a real MLflow store: register, alias, promote through the gate, roll back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import pytest
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb


def _name() -> str:
    return f"distance-{uuid.uuid4().hex[:8]}"


async def _register(registry, model: str, run_id: str,
                    **extra: object) -> pb.RegisterModelVersionResponse:
    request = pb.RegisterModelVersionRequest(model_name=model, run_id=run_id, **extra)
    return await registry.stub.RegisterModelVersion(request, metadata=registry.admin(), timeout=120)


async def test_register_alias_promote_refuse_rollback(registry, mlflow_store) -> None:
    stub, admin, model = registry.stub, registry.admin(), _name()
    first = (await _register(registry, model, mlflow_store.good_run,
                             tags={"sweep_id": "s1", "git_sha": "abc"},
                             metrics={"val_mae_mm": 21.0})).version
    assert first.version == "1" and first.run_id == mlflow_store.good_run
    assert first.source.startswith("models:/m-")  # MLflow 3 logged model behind runs:/<id>/model
    assert first.tags["sweep_id"] == "s1" and first.tags["git_sha"] == "abc"
    assert first.metrics["holdout_mae_mm"] == 20.0 and first.metrics["val_mae_mm"] == 21.0

    # No champion yet: the first promotion passes without an evaluation.
    promoted = await stub.PromoteModelVersion(pb.PromoteModelVersionRequest(
        model_name=model, version="1"), metadata=admin)
    assert promoted.promoted and promoted.previous_version == ""
    assert list(promoted.version.aliases) == ["champion"]

    # Candidate 2 beats champion 1 on the same holdout: the gate passes.
    better = model_pb2.HoldoutEvaluation(holdout_id="h1", candidate_mae_mm=10.0,
                                         champion_version="1", champion_mae_mm=20.0,
                                         sample_count=50)
    asked = time.time()
    second = await _register(registry, model, mlflow_store.better_run, evaluation=better,
                             promote=True)
    answered = time.time()
    assert second.version.version == "2"
    # The decision's time is the registry's, inside the call: what a sweep reports as
    # "promoted at" must not come after the deployments following the alias switched.
    assert asked <= second.promotion.decided_at.ToNanoseconds() / 1e9 <= answered
    assert second.promotion.promoted and second.promotion.previous_version == "1"
    assert "10.000" in second.promotion.reason and "20.000" in second.promotion.reason
    assert list(second.version.aliases) == ["champion"]

    # Candidate 3 is worse than champion 2: refused, a normal answer with the numbers.
    worse = model_pb2.HoldoutEvaluation(holdout_id="h2", candidate_mae_mm=30.0,
                                        champion_version="2", champion_mae_mm=10.0)
    third = (await _register(registry, model, mlflow_store.good_run, evaluation=worse)).version
    refused = await stub.PromoteModelVersion(pb.PromoteModelVersionRequest(
        model_name=model, version=third.version), metadata=admin)
    assert not refused.promoted and "30.000" in refused.reason and "10.000" in refused.reason
    champion = await stub.GetModelVersion(pb.GetModelVersionRequest(
        model_name=model, selector=dpb.VersionSelector(alias="champion")), metadata=admin)
    assert champion.version.version == "2"

    # Forced, then rolled back twice: 3 -> 2 -> 1.
    forced = await stub.PromoteModelVersion(pb.PromoteModelVersionRequest(
        model_name=model, version="3", force=True), metadata=admin)
    assert forced.promoted and forced.previous_version == "2"
    back = await stub.RollbackModel(pb.RollbackModelRequest(model_name=model), metadata=admin)
    assert back.version.version == "2" and back.rolled_back_from == "3"
    back = await stub.RollbackModel(pb.RollbackModelRequest(model_name=model), metadata=admin)
    assert back.version.version == "1" and back.rolled_back_from == "2"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RollbackModel(pb.RollbackModelRequest(model_name=model), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    listed = await stub.ListModelVersions(pb.ListModelVersionsRequest(model_name=model),
                                          metadata=registry.read())
    assert [(v.version, list(v.aliases)) for v in listed.versions] == [
        ("3", []), ("2", []), ("1", ["champion"])]
    assert listed.versions[1].evaluation.champion_mae_mm == 20.0
    changes = await stub.ListHistory(pb.ListHistoryRequest(subject=f"model/{model}"),
                                     metadata=admin)
    # the TFLite conversions run in the background: their records land anywhere in between
    records = [c for c in changes.records if not c.action.startswith("tflite")]
    assert [c.action for c in records] == ["rollback", "rollback", "promote", "promote_refused",
                                           "register", "promote", "register", "promote",
                                           "register"]
    assert json.loads(records[0].detail)["rolled_back_from"] == "2"
    await registry.app.models.wait_conversions()


async def test_a_missing_version_is_an_answer_when_the_caller_allows_it(registry,
                                                                      mlflow_store) -> None:
    """The trainer asks for the champion before a model's first one: with allow_missing the
    registry answers OK without a version (no failed call in the sweep's trace)."""
    stub, admin, model = registry.stub, registry.admin(), _name()
    champion = dpb.VersionSelector(alias="champion")

    async def get(name: str, **extra: object) -> pb.GetModelVersionResponse:
        return await stub.GetModelVersion(pb.GetModelVersionRequest(
            model_name=name, selector=champion, **extra), metadata=admin)

    for missing in ("no model yet", "a version but no champion"):
        reply = await get(model, allow_missing=True)
        assert not reply.HasField("version"), missing
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get(model)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, missing
        await _register(registry, model, mlflow_store.good_run)
    await stub.PromoteModelVersion(pb.PromoteModelVersionRequest(model_name=model, version="1"),
                                   metadata=admin)
    assert (await get(model, allow_missing=True)).version.version == "1"


async def test_gate_refuses_an_evaluation_against_another_champion(registry, mlflow_store) -> None:
    model = _name()
    await _register(registry, model, mlflow_store.good_run, promote=True)
    stale = model_pb2.HoldoutEvaluation(candidate_mae_mm=1.0, champion_version="7",
                                        champion_mae_mm=50.0)
    second = await _register(registry, model, mlflow_store.better_run, evaluation=stale,
                             promote=True)
    assert not second.promotion.promoted
    assert "version 7" in second.promotion.reason and "version 1" in second.promotion.reason
    none = await _register(registry, model, mlflow_store.better_run, promote=True)
    assert not none.promotion.promoted and "no holdout evaluation" in none.promotion.reason
    await registry.app.models.wait_conversions()


async def test_gate_reads_which_worlds_the_champion_knew_from_its_registration(
        registry, mlflow_store) -> None:
    """A world new to the champion is not judged for forgetting; one it knew still is."""
    model = _name()
    await _register(registry, model, mlflow_store.good_run, promote=True,
                    metrics={"holdout_mae_mm/world/beige": 2.1})
    candidate = {"holdout_mae_mm/world/beige": 2.2, "champion_mae_mm/world/beige": 2.1,
                 "holdout_mae_mm/world/angle": 5.3, "champion_mae_mm/world/angle": 2.5,
                 "holdout_runs/world/angle": 1.0}
    against_1 = model_pb2.HoldoutEvaluation(candidate_mae_mm=3.1, champion_version="1",
                                            champion_mae_mm=3.3)
    second = await _register(registry, model, mlflow_store.better_run, evaluation=against_1,
                             promote=True, metrics=candidate)
    assert second.promotion.promoted, second.promotion.reason
    assert "not judged for forgetting: angle" in second.promotion.reason
    # Version 2 knew both worlds: a candidate that forgets the angled world is refused.
    against_2 = model_pb2.HoldoutEvaluation(candidate_mae_mm=3.0, champion_version="2",
                                            champion_mae_mm=3.1)
    third = await _register(registry, model, mlflow_store.good_run, evaluation=against_2,
                            promote=True, metrics={**candidate,
                                                   "holdout_mae_mm/world/angle": 12.0,
                                                   "champion_mae_mm/world/angle": 5.3})
    assert not third.promotion.promoted
    assert "forgets angle (12.00 vs 5.30 mm, 1 holdout run)" in third.promotion.reason
    await registry.app.models.wait_conversions()


async def test_new_versions_and_aliases_reach_watchers(registry, mlflow_store) -> None:
    stub, admin, model = registry.stub, registry.admin(), _name()
    await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
        name="newest", model_name=model, selector=dpb.VersionSelector(latest=True),
        strategy=dpb.Strategy.STRATEGY_SHADOW, challenger=dpb.VersionSelector(alias="challenger"),
        active=True)), metadata=admin)
    stream = stub.WatchDeployments(pb.WatchDeploymentsRequest(), metadata=registry.read())
    try:
        # Generous bounds for a loaded machine, all well under the 60 s refresh poll: the
        # changes below can only arrive in time if they are pushed.
        assert (await asyncio.wait_for(stream.read(), 60)).snapshot
        await _register(registry, model, mlflow_store.good_run)
        change = await asyncio.wait_for(stream.read(), 20)
        stable, shadow = change.deployments[0].resolved
        assert (stable.arm, stable.model_version, stable.version_label) == ("stable", "1", "stable")
        assert stable.model_path.endswith(f"{model}/1") and shadow.model_version == ""
        await stub.SetAlias(pb.SetAliasRequest(model_name=model, alias="challenger", version="1"),
                            metadata=admin)
        change = await asyncio.wait_for(stream.read(), 20)
        assert change.deployments[0].resolved[1].model_version == "1"
    finally:
        stream.cancel()
    await registry.app.models.wait_conversions()


async def test_registration_errors_are_clear(registry, mlflow_store) -> None:
    cases = [
        (pb.RegisterModelVersionRequest(model_name="", run_id="abc"),
         grpc.StatusCode.INVALID_ARGUMENT, "model_name:"),
        (pb.RegisterModelVersionRequest(model_name="m", run_id=""),
         grpc.StatusCode.INVALID_ARGUMENT, "run_id:"),
        (pb.RegisterModelVersionRequest(model_name="m", run_id="0" * 32),
         grpc.StatusCode.NOT_FOUND, "run_id:"),
        (pb.RegisterModelVersionRequest(model_name="m", run_id=mlflow_store.good_run,
                                        artifact_path="nothing"),
         grpc.StatusCode.NOT_FOUND, "run_id:"),
        (pb.RegisterModelVersionRequest(model_name="m", run_id=mlflow_store.good_run,
                                        artifact_path="../x"),
         grpc.StatusCode.INVALID_ARGUMENT, "artifact_path:"),
    ]
    for request, code, prefix in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.stub.RegisterModelVersion(request, metadata=registry.admin())
        assert caught.value.code() == code, (request, caught.value.details())
        assert caught.value.details().startswith(prefix), caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.SetAlias(pb.SetAliasRequest(model_name="m", alias="v1", version="1"),
                                     metadata=registry.admin())
    assert caught.value.details().startswith("alias:")


async def test_alias_on_a_version_made_outside_the_registry_publishes_it(registry,
                                                                        mlflow_store) -> None:
    from mlflow import MlflowClient

    model = _name()
    client = MlflowClient(tracking_uri=mlflow_store.uri, registry_uri=mlflow_store.uri)
    model_id = client.get_run(mlflow_store.good_run).outputs.model_outputs[0].model_id
    client.create_registered_model(model)
    client.create_model_version(model, f"models:/{model_id}", run_id=mlflow_store.good_run,
                                model_id=model_id)
    client.create_model_version(model, "file:///nowhere/at/all")
    assert not (registry.repository / model / "1").exists()
    moved = await registry.stub.SetAlias(pb.SetAliasRequest(
        model_name=model, alias="champion", version="1"), metadata=registry.admin(), timeout=120)
    assert moved.version.published_path == str(registry.repository / model / "1")
    assert (registry.repository / model / "1" / "saved_model.pb").exists()
    assert moved.version.metrics["holdout_mae_mm"] == 20.0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.PromoteModelVersion(pb.PromoteModelVersionRequest(
            model_name=model, version="2", force=True), metadata=registry.admin())
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("version: version 2")
    champion = await registry.stub.GetModelVersion(pb.GetModelVersionRequest(
        model_name=model, selector=dpb.VersionSelector(alias="champion")), metadata=registry.read())
    assert champion.version.version == "1"
    await registry.app.models.wait_conversions()


async def test_a_retried_registration_returns_the_version_it_registered(registry,
                                                                        mlflow_store) -> None:
    model = _name()
    first = await _register(registry, model, mlflow_store.good_run, request_id="sweep-abc",
                            promote=True)
    # The same request again (its answer was lost, or the caller could not tell): no second
    # version, and the promotion is reported, not judged again against itself.
    again = await _register(registry, model, mlflow_store.good_run, request_id="sweep-abc",
                            promote=True)
    other = await _register(registry, model, mlflow_store.good_run, request_id="sweep-def")

    assert first.version.version == again.version.version == "1"
    assert first.promotion.promoted and again.promotion.promoted
    assert "earlier attempt of request sweep-abc" in again.promotion.reason
    assert other.version.version == "2"
    listed = await registry.stub.ListModelVersions(pb.ListModelVersionsRequest(model_name=model),
                                                   metadata=registry.read())
    assert [v.version for v in listed.versions] == ["2", "1"]
