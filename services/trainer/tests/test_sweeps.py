"""End to end through the gRPC contract: snapshot -> Ray Tune -> MLflow -> registry.

Real local Ray, a real MLflow SQLite store, real PostgreSQL, the real features and
registry services (see conftest.py), simulated beige frames.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import mlflow
import numpy as np
import pytest
from edgeloop.contracts.registry.v1 import deployment_pb2, registry_service_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as pb
from edgeloop.platform import bearer

WEBHOOK_SECRET = "grafana-webhook-secret-for-tests"
"""The stack's webhook secret (conftest.WEBHOOK_SECRET)."""
CARRIED_TRAIN_FRAMES = 60
"""The stack trainer's budget of carried training frames (conftest.CARRIED_TRAIN_FRAMES)."""

S = sweep_pb2
FAST_SPACE = S.SearchSpace(
    learning_rates=[1e-3],
    batch_sizes=[16, 32],
    epochs=[4],
    architectures=["small"],
    filters=[16],
    dropouts=[0.1],
    dense_units=[32],
)


def wait_done(stub: Any, sweep_id: str, timeout: float = 600) -> list[S.SweepEvent]:
    """Follow WatchSweep to the end; returns every event."""
    events = [
        r.event for r in stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id), timeout=timeout)
    ]
    assert events, "WatchSweep returned no events"
    return events


def mean_predictor_mae(labels: np.ndarray) -> float:
    """MAE of always answering the training mean: the floor a model must beat."""
    return float(np.mean(np.abs(labels - labels.mean())))


@pytest.fixture(scope="module")
def first_sweep(stack: Any) -> dict[str, Any]:
    """The module's main sweep: 2 trials x up to 4 epochs on the beige frames, promoted."""
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        started = stub.StartSweep(
            pb.StartSweepRequest(
                model_name="distance",
                trigger="manual",
                data=S.DataSelection(deployments=["garage-beige"]),
                search_space=FAST_SPACE,
                num_trials=2,
                deployment="garage-beige",
                promote=True,
                seed=11,
            ),
            timeout=60,
        ).sweep
        events = wait_done(stub, started.sweep_id)
        sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=started.sweep_id), timeout=30).sweep
    return {"started": started, "events": events, "sweep": sweep}


def test_empty_selection_is_refused_before_any_work(stack: Any) -> None:
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.StartSweep(
                pb.StartSweepRequest(data=S.DataSelection(deployments=["nowhere"])), timeout=60
            )
        listed = stub.ListSweeps(pb.ListSweepsRequest(), timeout=30).sweeps
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "matches 0 labelled observations" in caught.value.details()
    assert "at least 30" in caught.value.details()
    assert all(s.data.deployments != ["nowhere"] for s in listed), "nothing was queued"


def test_bad_search_space_names_the_field(stack: Any) -> None:
    with (
        grpc.insecure_channel(stack.trainer.address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        stack.trainer_stub(channel).StartSweep(
            pb.StartSweepRequest(search_space=S.SearchSpace(architectures=["huge"])), timeout=60
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "search_space.architectures" in caught.value.details()


def test_sweep_registers_a_version_better_than_the_mean(
    stack: Any, first_sweep: dict[str, Any], spawned_children: Any
) -> None:
    sweep, events = first_sweep["sweep"], first_sweep["events"]
    assert sweep.state == S.SWEEP_STATE_SUCCEEDED, sweep.error
    kinds = [e.type for e in events]
    for kind in (
        S.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT,
        S.SWEEP_EVENT_TYPE_TRIAL_STARTED,
        S.SWEEP_EVENT_TYPE_EPOCH,
        S.SWEEP_EVENT_TYPE_TRIAL_FINISHED,
        S.SWEEP_EVENT_TYPE_BEST_SO_FAR,
        S.SWEEP_EVENT_TYPE_VERSION_REGISTERED,
        S.SWEEP_EVENT_TYPE_PROMOTION,
    ):
        assert kind in kinds, S.SweepEventType.Name(kind)
    assert kinds.count(S.SWEEP_EVENT_TYPE_TRIAL_STARTED) == 2
    assert events[-1].state == S.SWEEP_STATE_SUCCEEDED
    built = next(e for e in events if e.type == S.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT)
    assert "; new runs split " in built.message, built.message
    # the registration's TensorFlow child (TensorFlowProcess) exported, evaluated and is gone
    # (the registry's, serving in this process too, converts the version to TFLite after it
    # registered it, then idles: its pid is known once it has converted)
    stack.registry.run(stack.registry.app.models.wait_conversions())
    registry_child = stack.registry.app.models.tensorflow.pid
    assert not [p for p in spawned_children() if p.pid != registry_child]
    assert sweep.model_version and sweep.promoted, sweep.promotion_note
    # Bound: half the MAE of always answering the mean label. The beige labels spread
    # over ~25-250 mm (mean-predictor MAE ~50 mm); a CNN that reads the wall's position
    # in the frame at all halves that within a few epochs, a broken pipeline
    # (shuffled labels, lost scaling, wrong split) does not.
    labels = np.array([o.sensor_mm for o in stack.observations if o.HasField("sensor_mm")])
    bound = 0.5 * mean_predictor_mae(labels)
    assert 0 < sweep.holdout_mae_mm < bound, (sweep.holdout_mae_mm, bound)
    with grpc.insecure_channel(stack.registry.address) as channel:
        version = (
            stack.registry_stub(channel)
            .GetModelVersion(
                registry_service_pb2.GetModelVersionRequest(
                    model_name="distance",
                    selector=deployment_pb2.VersionSelector(version=sweep.model_version),
                ),
                metadata=bearer("trainer-tests-admin-token-0123456789"),
                timeout=30,
            )
            .version
        )
    assert version.metrics["holdout_mae_mm"] == pytest.approx(sweep.holdout_mae_mm, rel=1e-5)
    assert version.tags["sweep_id"] == sweep.sweep_id
    assert version.tags["dataset_snapshot"] == sweep.dataset.snapshot_id
    assert version.evaluation.sample_count == sweep.dataset.holdout_count
    # The promotion event carries the registry gate's time, not the moment its answer
    # reached the trainer: the alias moved (and deployments switched) before that answer.
    with grpc.insecure_channel(stack.registry.address) as channel:
        changes = stack.registry_stub(channel).ListHistory(
            registry_service_pb2.ListHistoryRequest(subject="model/distance"),
            metadata=bearer("trainer-tests-admin-token-0123456789"), timeout=30).records
    moved = next(c for c in changes if c.action == "promote"
                 and json.loads(c.detail)["version"] == sweep.model_version)
    promotion = next(e for e in events if e.type == S.SWEEP_EVENT_TYPE_PROMOTION)
    assert promotion.time.ToNanoseconds() <= moved.time.ToNanoseconds(), (promotion, moved)


def test_mlflow_runs_carry_lineage(stack: Any, first_sweep: dict[str, Any],
                                   tmp_path: Path) -> None:
    sweep = first_sweep["sweep"]
    client = mlflow.MlflowClient(stack.mlflow_uri)
    parent = client.get_run(sweep.mlflow_parent_run_id)
    children = client.search_runs(
        [sweep.mlflow_experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 2
    for run in [parent, *children]:
        tags = run.data.tags
        assert tags["sweep_id"] == sweep.sweep_id
        assert tags["dataset_snapshot"] == sweep.dataset.snapshot_id
        assert tags["trigger"] == "manual"
        assert tags["git_sha"] and tags["git_sha"] != ""
    inputs = parent.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == [f"snapshot-{sweep.dataset.snapshot_id}"]
    assert sweep.dataset.content_hash.startswith(inputs[0].dataset.digest)
    best = next(r for r in children if r.data.tags["ray_trial_id"] == sweep.best_trial_id)
    history = client.get_metric_history(best.info.run_id, "val_mae_mm")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2
    assert best.data.params["architecture"] == "small"
    # the logged model serves the documented signature and predicts millimetres
    model = mlflow.pyfunc.load_model(f"runs:/{best.info.run_id}/model",
                                     dst_path=str(tmp_path))  # else a temp folder kept for good
    arrays = np.load(
        stack.folder / "objects" / "trainer" / "sweeps" / sweep.dataset.snapshot_id / "arrays.npz"
    )
    holdout = arrays["split"] == 2
    # the raw frames a robot sends (the trials' images are pre-resized, see the snapshot doc)
    predicted = np.asarray(model.predict({"image": arrays["holdout_frames"]}))
    mae = float(np.mean(np.abs(predicted - arrays["labels"][holdout])))
    assert mae == pytest.approx(sweep.holdout_mae_mm, rel=1e-3)


def test_manifest_lists_exactly_the_observations_used(
    stack: Any, first_sweep: dict[str, Any]
) -> None:
    sweep = first_sweep["sweep"]
    base = stack.folder / "objects" / "trainer" / "sweeps" / sweep.dataset.snapshot_id
    manifest = json.loads((base / "manifest.json").read_text())
    labelled = {
        o.observation_id: o.sensor_mm for o in stack.observations if o.HasField("sensor_mm")
    }
    used = {e["observation_id"]: e["label_mm"] for e in manifest["observations"]}
    assert used.keys() == labelled.keys()
    assert all(abs(used[i] - labelled[i]) < 1e-3 for i in used)
    assert sweep.dataset.observation_count == len(labelled)
    counts = manifest["split_counts"]
    assert sum(counts.values()) == len(labelled) and min(counts.values()) > 0
    arrays = np.load(base / "arrays.npz")
    # resized once, as the model resizes; not rounded to uint8, so that training sees what
    # serving computes (to float16's rounding)
    assert arrays["images"].shape == (len(labelled), 75, 100, 3)
    assert arrays["images"].dtype == np.float16
    assert arrays["holdout_frames"].shape == (counts["holdout"], 240, 320, 3), "raw, for serving"
    assert arrays["holdout_frames"].dtype == np.uint8
    assert manifest["arrays_format"] == 2 and manifest["image_shape"] == [240, 320, 3]
    # the trials balance worlds by this index; it must name each frame's world
    assert [manifest["worlds"][i] for i in arrays["world"]] == [
        e["world"] for e in manifest["observations"]]
    reference = json.loads((base / "reference.json").read_text())
    assert reference["holdout_mae_mm"] == pytest.approx(sweep.holdout_mae_mm)
    assert 40 <= reference["stats"]["saturation"]["mean"] <= 60, "beige is inside the thesis band"
    assert sum(reference["stats"]["saturation"]["histogram"]["counts"]) == len(labelled)


def test_from_sweep_reuses_the_identical_snapshot(stack: Any, first_sweep: dict[str, Any]) -> None:
    first = first_sweep["sweep"]
    space = S.SearchSpace(
        batch_sizes=[8],
        epochs=[2],
        architectures=["small"],
        filters=[8],
        learning_rates=[1e-3],
        dropouts=[0.1],
        dense_units=[16],
    )
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        started = stub.StartSweep(
            pb.StartSweepRequest(
                from_sweep=first.sweep_id, search_space=space, num_trials=1, promote=False
            ),
            timeout=60,
        ).sweep
        wait_done(stub, started.sweep_id)
        rerun = stub.GetSweep(pb.GetSweepRequest(sweep_id=started.sweep_id), timeout=30).sweep
    assert rerun.state == S.SWEEP_STATE_SUCCEEDED, rerun.error
    assert rerun.from_sweep == first.sweep_id
    assert rerun.dataset.snapshot_id == first.dataset.snapshot_id
    assert rerun.dataset.content_hash == first.dataset.content_hash
    assert rerun.dataset.manifest_key == first.dataset.manifest_key
    assert (rerun.dataset.train_count, rerun.dataset.holdout_count) == (
        first.dataset.train_count,
        first.dataset.holdout_count,
    )
    assert rerun.trials[0].params["batch_size"] == "8"
    assert not rerun.promoted
    # the champion (the first sweep's version) was judged on the same holdout
    with grpc.insecure_channel(stack.registry.address) as channel:
        version = (
            stack.registry_stub(channel)
            .GetModelVersion(
                registry_service_pb2.GetModelVersionRequest(
                    model_name="distance",
                    selector=deployment_pb2.VersionSelector(version=rerun.model_version),
                ),
                metadata=bearer("trainer-tests-admin-token-0123456789"),
                timeout=30,
            )
            .version
        )
    assert version.evaluation.champion_version == first.model_version
    assert version.evaluation.champion_mae_mm == pytest.approx(first.holdout_mae_mm, rel=1e-3)
    assert version.evaluation.holdout_id == first.dataset.content_hash


def test_warm_start_fine_tunes_the_named_version(stack: Any, first_sweep: dict[str, Any]) -> None:
    first = first_sweep["sweep"]
    # The request asks for another shape and a learning rate too small to move the
    # weights in one epoch: a warm-started trial keeps the version's shape and so its
    # candidate measures like the version on the same holdout; from scratch it would not.
    space = S.SearchSpace(learning_rates=[1e-9], batch_sizes=[32], epochs=[1],
                          architectures=["thesis"], filters=[8], dropouts=[0.1], dense_units=[16])
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        started = stub.StartSweep(
            pb.StartSweepRequest(
                from_sweep=first.sweep_id, search_space=space, num_trials=1, promote=False,
                warm_start=deployment_pb2.VersionSelector(version=first.model_version),
            ),
            timeout=60,
        ).sweep
        wait_done(stub, started.sweep_id)
        tuned = stub.GetSweep(pb.GetSweepRequest(sweep_id=started.sweep_id), timeout=30).sweep
    assert tuned.state == S.SWEEP_STATE_SUCCEEDED, tuned.error
    assert started.warm_start_version == tuned.warm_start_version == first.model_version
    params = tuned.trials[0].params
    assert ((params["architecture"], params["filters"], params["dense_units"])
            == ("small", "16", "32"))
    assert params["learning_rate"] == "1e-09"
    assert tuned.holdout_mae_mm == pytest.approx(first.holdout_mae_mm, rel=0.01)
    with grpc.insecure_channel(stack.registry.address) as channel:
        version = stack.registry_stub(channel).GetModelVersion(
            registry_service_pb2.GetModelVersionRequest(
                model_name="distance",
                selector=deployment_pb2.VersionSelector(version=tuned.model_version)),
            metadata=bearer("trainer-tests-admin-token-0123456789"), timeout=30).version
    assert version.tags["warm_start_version"] == first.model_version


def test_warm_start_from_an_unknown_version_is_refused(stack: Any,
                                                       first_sweep: dict[str, Any]) -> None:
    with grpc.insecure_channel(stack.trainer.address) as channel, \
            pytest.raises(grpc.RpcError) as caught:
        stack.trainer_stub(channel).StartSweep(
            pb.StartSweepRequest(from_sweep=first_sweep["sweep"].sweep_id,
                                 warm_start=deployment_pb2.VersionSelector(version="999")),
            timeout=60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().startswith("warm_start: model 'distance' has no version 999")


def test_list_sweeps_by_observation_follows_the_snapshot(
    stack: Any, first_sweep: dict[str, Any]
) -> None:
    first = first_sweep["sweep"]
    used = next(o.observation_id for o in stack.observations if o.HasField("sensor_mm"))
    unlabelled = [o.observation_id for o in stack.observations if not o.HasField("sensor_mm")]
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        found = stub.ListSweeps(pb.ListSweepsRequest(observation_id=used), timeout=30).sweeps
        none = stub.ListSweeps(pb.ListSweepsRequest(observation_id="not-an-id"), timeout=30).sweeps
        if unlabelled:
            skipped = stub.ListSweeps(
                pb.ListSweepsRequest(observation_id=unlabelled[0]), timeout=30
            ).sweeps
            assert list(skipped) == [], "an unlabelled frame is in no snapshot"
    ids = {s.sweep_id for s in found}
    assert first.sweep_id in ids
    assert all(s.dataset.snapshot_id == first.dataset.snapshot_id for s in found)
    assert list(none) == []


def test_a_capped_selection_fetches_the_newest_frames_only(stack: Any) -> None:
    """The cap is applied to the listing; only the kept frames' images are fetched."""
    from edgeloop.trainer import snapshot

    async def fetch(selection: S.DataSelection) -> list[Any]:
        async with grpc.aio.insecure_channel(stack.features.address) as channel:
            return await snapshot.fetch_selection(channel, selection)

    everything = asyncio.run(fetch(S.DataSelection(deployments=["garage-beige"])))
    capped = asyncio.run(fetch(S.DataSelection(deployments=["garage-beige"],
                                           max_observations=25)))
    newest = sorted(everything, key=lambda o: (o.time.ToNanoseconds(), o.observation_id))[-25:]
    assert len(everything) > 25
    assert [o.observation_id for o in capped] == [o.observation_id for o in newest]
    assert all(o.jpeg and o.HasField("sensor_mm") for o in capped)


def test_cancel_stops_a_running_sweep_and_queue_waits(stack: Any) -> None:
    slow = S.SearchSpace(
        epochs=[50],
        architectures=["small"],
        batch_sizes=[8],
        filters=[8],
        learning_rates=[1e-3],
        dropouts=[0.1],
        dense_units=[16],
    )
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        request = pb.StartSweepRequest(model_name="cancel-me", search_space=slow, num_trials=2)
        running = stub.StartSweep(request, timeout=60).sweep
        queued = stub.StartSweep(request, timeout=60).sweep
        assert (
            stub.GetSweep(pb.GetSweepRequest(sweep_id=queued.sweep_id), timeout=30).sweep.state
            == S.SWEEP_STATE_QUEUED
        ), "one sweep per model runs; the second waits"
        for response in stub.WatchSweep(
            pb.WatchSweepRequest(sweep_id=running.sweep_id), timeout=300
        ):
            if response.event.type == S.SWEEP_EVENT_TYPE_EPOCH:
                break
        cancelled_queued = stub.CancelSweep(
            pb.CancelSweepRequest(sweep_id=queued.sweep_id), timeout=60
        ).sweep
        started = time.monotonic()
        cancelled = stub.CancelSweep(
            pb.CancelSweepRequest(sweep_id=running.sweep_id), timeout=200
        ).sweep
        elapsed = time.monotonic() - started
    assert cancelled_queued.state == S.SWEEP_STATE_CANCELLED
    assert cancelled.state == S.SWEEP_STATE_CANCELLED, (cancelled.error, elapsed)
    assert all(t.epochs_done < 50 for t in cancelled.trials)
    assert not cancelled.model_version
    parent = mlflow.MlflowClient(stack.mlflow_uri).get_run(cancelled.mlflow_parent_run_id)
    assert parent.info.status == "KILLED"


def test_a_retried_start_returns_the_sweep_it_queued(stack: Any) -> None:
    """A caller whose StartSweep timed out retries with the same request_id: one sweep."""
    slow = S.SearchSpace(epochs=[50], architectures=["small"], batch_sizes=[8], filters=[8],
                         learning_rates=[1e-3], dropouts=[0.1], dense_units=[16])
    request = pb.StartSweepRequest(model_name="retry-me", search_space=slow, num_trials=1,
                                   request_id="drift:garage-beige:event-1:0")
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        # Two at once (the race a slow first call leaves), then one more after.
        calls = [stub.StartSweep.future(request, timeout=60) for _ in range(2)]
        first, second = (call.result().sweep for call in calls)
        third = stub.StartSweep(request, timeout=60).sweep
        other = stub.StartSweep(pb.StartSweepRequest(
            model_name="retry-me", search_space=slow, num_trials=1,
            request_id="drift:garage-beige:event-1:1"), timeout=60).sweep
        listed = [s for s in stub.ListSweeps(pb.ListSweepsRequest(), timeout=30).sweeps
                  if s.model_name == "retry-me"]
        for sweep in (first, other):
            stub.CancelSweep(pb.CancelSweepRequest(sweep_id=sweep.sweep_id), timeout=200)
        with pytest.raises(grpc.RpcError) as caught:
            stub.StartSweep(pb.StartSweepRequest(model_name="retry-me", request_id="x" * 129),
                            timeout=60)
    assert first.sweep_id == second.sweep_id == third.sweep_id
    assert other.sweep_id != first.sweep_id, "another request_id is another sweep"
    assert sorted(s.sweep_id for s in listed) == sorted({first.sweep_id, other.sweep_id})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in caught.value.details()


def test_a_grafana_alert_fine_tunes_the_champion(stack: Any, first_sweep: dict[str, Any]) -> None:
    first = first_sweep["sweep"]
    assert first.promoted, first.promotion_note
    alert = {"status": "firing", "fingerprint": "fp-champion", "startsAt": "2026-11-30T10:00:00Z",
             "labels": {"alertname": "saturation-out-of-band", "deployment": "garage-beige",
                        "model": "distance"}}
    request = urllib.request.Request(
        stack.webhook_url, data=json.dumps({"status": "firing", "alerts": [alert]}).encode(),
        method="POST", headers={"Content-Type": "application/json",
                                "Authorization": f"Bearer {WEBHOOK_SECRET}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert answer["results"][0]["result"] == "started", answer
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        sweep_id = answer["results"][0]["sweep_id"]
        sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id), timeout=30).sweep
        # the sweep itself is the other tests' business; stop it to free the CPUs
        stub.CancelSweep(pb.CancelSweepRequest(sweep_id=sweep_id), timeout=200)
    assert sweep.warm_start_version == first.model_version, "the champion, not from scratch"


def test_a_snapshot_from_before_preresizing_still_trains(stack: Any,
                                                        first_sweep: dict[str, Any]) -> None:
    """A format 1 snapshot (raw uint8 frames of every split) reused with from_sweep."""
    import cv2

    first = first_sweep["sweep"]
    base = stack.folder / "objects" / "trainer" / "sweeps" / first.dataset.snapshot_id
    manifest = json.loads((base / "manifest.json").read_text())
    jpegs = {o.observation_id: o.jpeg for o in stack.observations}
    raw = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(jpegs[e["observation_id"]], np.uint8),
                                              cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for e in manifest["observations"]])
    current = (base / "arrays.npz").read_bytes()
    with np.load(base / "arrays.npz") as data:
        rest = {name: data[name] for name in ("labels", "split", "world")}
    try:
        with open(base / "arrays.npz", "wb") as handle:
            np.savez(handle, images=raw, **rest)
        with grpc.insecure_channel(stack.trainer.address) as channel:
            stub = stack.trainer_stub(channel)
            started = stub.StartSweep(pb.StartSweepRequest(
                from_sweep=first.sweep_id, num_trials=1, promote=False,
                search_space=S.SearchSpace(batch_sizes=[16], epochs=[1], architectures=["small"],
                                           filters=[4], learning_rates=[1e-3], dropouts=[0.1],
                                           dense_units=[8])), timeout=60).sweep
            wait_done(stub, started.sweep_id)
            rerun = stub.GetSweep(pb.GetSweepRequest(sweep_id=started.sweep_id), timeout=30).sweep
    finally:
        (base / "arrays.npz").write_bytes(current)
    assert rerun.state == S.SWEEP_STATE_SUCCEEDED, rerun.error
    assert rerun.dataset.holdout_count == first.dataset.holdout_count
    assert rerun.holdout_mae_mm > 0 and rerun.model_version
    converted = (stack.folder / "work" / "trainer" / "sweeps" / first.dataset.snapshot_id
                 / "arrays.v2.npz")
    with np.load(converted) as data:
        assert data["images"].shape == (len(raw), 75, 100, 3)
        assert np.array_equal(data["holdout_frames"], raw[rest["split"] == 2])


def test_a_retrain_carries_judged_frames_whole_and_training_runs_within_the_budget(
        stack: Any, first_sweep: dict[str, Any]) -> None:
    """include_snapshots_of: every validation and holdout frame keeps its split; the
    training frames come as whole runs, no more than the trainer's budget."""
    from edgeloop.trainer.snapshot import drive_units

    def manifest(snapshot_id: str) -> dict[str, Any]:
        path = stack.folder / "objects" / "trainer" / "sweeps" / snapshot_id / "manifest.json"
        return json.loads(path.read_text())

    old = manifest(first_sweep["sweep"].dataset.snapshot_id)
    nothing_new = S.DataSelection(deployments=["garage-beige"])
    nothing_new.start_time.FromSeconds(int(time.time()) + 3600)
    nothing_new.include_snapshots_of.append(old["snapshot_id"])
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        sweep_id = stub.StartSweep(pb.StartSweepRequest(
            model_name="carry", data=nothing_new, search_space=FAST_SPACE, num_trials=1),
            timeout=60).sweep.sweep_id
        built = None
        for response in stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id), timeout=300):
            if response.event.type == S.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT:
                built = response.event
                break
        stub.CancelSweep(pb.CancelSweepRequest(sweep_id=sweep_id), timeout=200)
    assert built is not None, "the sweep never built its snapshot"
    new = {e["observation_id"]: e for e in manifest(sweep_id)["observations"]}
    judged = [e for e in old["observations"] if e["split"] != "train"]
    assert all(new[e["observation_id"]]["split"] == e["split"] for e in judged)
    training = [e for e in old["observations"] if e["split"] == "train"]
    assert len(training) > CARRIED_TRAIN_FRAMES, "the beige frames must exceed the budget"
    kept = [e for e in training if e["observation_id"] in new]
    assert 0 < len(kept) <= CARRIED_TRAIN_FRAMES
    assert len(new) == len(judged) + len(kept), "nothing else came along"
    runs: dict[int, set[bool]] = {}
    for entry, unit in zip(training, drive_units(training), strict=True):
        runs.setdefault(unit, set()).add(entry["observation_id"] in new)
    assert all(len(kept_or_not) == 1 for kept_or_not in runs.values()), "a run was cut"
    assert f"{len(kept)} of their {len(training)} training frames (budget)" in built.message
