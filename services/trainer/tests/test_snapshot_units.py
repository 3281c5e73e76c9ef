"""Pure parts of snapshots, search spaces and the webhook payload parser."""

from __future__ import annotations

import numpy as np
import pytest
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.errors import FailedPrecondition, InvalidArgument
from edgeloop.trainer import snapshot, tune
from edgeloop.trainer.webhook import BadPayload, parse_alerts
from google.protobuf.timestamp_pb2 import Timestamp


def _obs(i: int, deployment: str) -> observation_pb2.Observation:
    ts = Timestamp()
    ts.FromSeconds(1_700_000_000 + i)
    return observation_pb2.Observation(
        observation_id=f"id-{i:04d}",
        time=ts,
        deployment=deployment,
        sensor_mm=100.0 + i,
        jpeg=b"x%d" % i,
    )


def test_split_is_deterministic_and_covers_every_item() -> None:
    first, second = snapshot.assign_splits(200, 42), snapshot.assign_splits(200, 42)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, snapshot.assign_splits(200, 43))
    assert (first == 2).sum() == 30 and (first == 1).sum() == 30 and (first == 0).sum() == 140


def test_content_hash_changes_with_any_label() -> None:
    observations = [_obs(i, "a") for i in range(10)]
    manifest = snapshot.build_manifest("s", observations, sweep_pb2.DataSelection(), 0)
    entries = manifest["observations"]
    assert snapshot.content_hash(entries) == manifest["content_hash"]
    entries[3]["label_mm"] += 1
    assert snapshot.content_hash(entries) != manifest["content_hash"]


def test_cap_keeps_the_newest_and_balance_takes_equal_shares() -> None:
    observations = [_obs(i, "a") for i in range(30)] + [_obs(100 + i, "b") for i in range(10)]
    capped = snapshot.apply_cap(observations, sweep_pb2.DataSelection(max_observations=5))
    assert [o.observation_id for o in capped] == [f"id-{i:04d}" for i in range(105, 110)]
    balanced = snapshot.apply_cap(observations, sweep_pb2.DataSelection(balance_deployments=True))
    assert (
        sum(o.deployment == "a" for o in balanced)
        == sum(o.deployment == "b" for o in balanced)
        == 10
    )
    assert [o.observation_id for o in balanced if o.deployment == "a"][0] == "id-0020"


def test_too_few_observations_name_count_and_minimum(tmp_path) -> None:  # noqa: ANN001
    from edgeloop.platform.objectstore import LocalFolderStore

    with pytest.raises(FailedPrecondition, match="matches 3 labelled observations.*at least 30"):
        snapshot.build_snapshot(
            "s",
            [_obs(i, "a") for i in range(3)],
            sweep_pb2.DataSelection(),
            0,
            LocalFolderStore(tmp_path),
            tmp_path,
            30,
        )


def test_search_space_defaults_and_distinct_samples() -> None:
    values = tune.search_values(sweep_pb2.SearchSpace(batch_sizes=[8, 16]))
    assert values["batch_size"] == [8, 16] and values["architecture"] == ["thesis"]
    configs = tune.sample_configs(values, 4, seed=1)
    assert len({tuple(sorted(c.items())) for c in configs}) == 4, "no repeats while the grid lasts"
    assert configs == tune.sample_configs(values, 4, seed=1)
    with pytest.raises(InvalidArgument, match="search_space.dropouts"):
        tune.search_values(sweep_pb2.SearchSpace(dropouts=[1.5]))


def test_resources_fit_the_machine() -> None:
    fitted = tune.fit_resources(2, num_trials=4, requested=0, tf_threads=0)
    assert (fitted.concurrent, fitted.cpus_per_trial, fitted.tf_threads) == (2, 1.0, 1)
    single = tune.fit_resources(2, num_trials=4, requested=1, tf_threads=0)
    assert (single.concurrent, single.cpus_per_trial, single.tf_threads) == (1, 2.0, 2)


def test_grafana_payload_parser() -> None:
    alert = {"status": "firing", "labels": {"alertname": "x"}, "fingerprint": "f", "startsAt": "t"}
    assert parse_alerts({"alerts": [alert, {**alert, "status": "resolved"}]})[0]["alertname"] == "x"
    with pytest.raises(BadPayload, match="alerts: expected a list"):
        parse_alerts({"status": "firing"})
    with pytest.raises(BadPayload, match=r"alerts\[0\].fingerprint"):
        parse_alerts({"alerts": [{**alert, "fingerprint": ""}]})


def test_reference_keeps_each_source_deployment_as_its_own_world() -> None:
    observations = [_obs(i, "beige" if i < 6 else "red") for i in range(10)]
    for o in observations:
        o.stats.saturation = 50.0 if o.deployment == "beige" else 71.0
    labels = np.array([o.sensor_mm for o in observations], dtype=np.float32)
    reference = snapshot.build_reference(observations, labels)
    assert reference["stats"]["saturation"]["mean"] == pytest.approx((6 * 50 + 4 * 71) / 10)
    groups = reference["groups"]
    assert set(groups) == {"beige", "red"}
    assert groups["beige"]["stats"]["saturation"]["mean"] == pytest.approx(50.0)
    assert groups["red"]["stats"]["saturation"]["mean"] == pytest.approx(71.0)
    assert groups["red"]["sample_count"] == 4
    assert sum(groups["red"]["label_histogram"]["counts"]) == 4
    assert (reference["label_min_mm"], reference["label_max_mm"]) == (100.0, 109.0)
