"""What a retrain carries of earlier snapshots: judged frames whole, training frames budgeted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from edgeloop.platform.errors import InvalidArgument
from edgeloop.platform.objectstore import LocalFolderStore
from edgeloop.trainer import carry, snapshot

FRAMES_PER_RUN = 24
START = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _world(name: str, train_runs: int, start_s: float, holdout_runs: int = 2,
           validation_runs: int = 2) -> list[dict[str, Any]]:
    """Manifest entries of one world: runs of 24 frames at 4 fps, 2 s apart."""
    splits = (["holdout"] * holdout_runs + ["validation"] * validation_runs
              + ["train"] * train_runs)
    entries = []
    for run, split in enumerate(splits):
        for k in range(FRAMES_PER_RUN):
            moment = START + timedelta(seconds=start_s + run * (FRAMES_PER_RUN / 4 + 2) + k / 4)
            entries.append({
                "observation_id": f"{name}-{run:03d}-{k:02d}", "deployment": "car",
                "device_id": "car-1", "session_id": name, "world": name, "split": split,
                "time": moment.isoformat().replace("+00:00", "Z"), "label_mm": 100.0,
                "sha256": "0", "image_key": "",
            })
    return entries


def _store(tmp_path: Path, snapshot_id: str, entries: list[dict[str, Any]]) -> LocalFolderStore:
    store = LocalFolderStore(tmp_path / "objects")
    store.put(f"{snapshot.prefix(snapshot_id)}/manifest.json",
              json.dumps({"observations": entries}).encode())
    return store


def _runs(ids: set[str] | frozenset[str]) -> Counter[str]:
    return Counter(i.rsplit("-", 1)[0] for i in ids)


@pytest.fixture
def lineage() -> list[dict[str, Any]]:
    """A serving version's snapshot: beige (20 training runs), a small label-shift world
    (3) and a green world (10)."""
    return (_world("beige", 20, 0) + _world("distant", 3, 10_000)
            + _world("green", 10, 20_000))


def test_a_lineage_within_the_budget_is_carried_whole(tmp_path: Path,
                                                      lineage: list[dict[str, Any]]) -> None:
    store = _store(tmp_path, "snap", lineage)
    carried = carry.carried_frames(store, ["snap"], budget=10_000)
    assert set(carried.entries) == {e["observation_id"] for e in lineage}
    assert not carried.left_out
    assert all(carried.entries[e["observation_id"]] == {"world": e["world"], "split": e["split"]}
               for e in lineage)
    assert carry.carried_frames(store, ["snap"], budget=0).entries == carried.entries


def test_the_budget_shares_training_frames_fairly_in_whole_runs(
        tmp_path: Path, lineage: list[dict[str, Any]]) -> None:
    store = _store(tmp_path, "snap", lineage)
    carried = carry.carried_frames(store, ["snap"], budget=300)
    kept = set(carried.entries)
    judged = {e["observation_id"] for e in lineage if e["split"] != "train"}
    assert judged <= kept, "every validation and holdout frame is carried"
    training = {w: {i for i in kept if i.startswith(w) and i not in judged}
                for w in ("beige", "distant", "green")}
    # distant (72 frames) fits its share whole; beige and green split the other 228
    assert len(training["distant"]) == 3 * FRAMES_PER_RUN
    for world in ("beige", "green"):
        assert 228 // 2 - FRAMES_PER_RUN < len(training[world]) <= 228 // 2
    assert sum(len(v) for v in training.values()) <= 300
    assert all(n == FRAMES_PER_RUN for n in _runs(kept).values()), "a run was cut"
    offered = {e["observation_id"] for e in lineage if e["split"] == "train"}
    assert carried.left_out == offered - kept
    assert (carried.training_offered, carried.training_kept) == (33 * 24, len(kept - judged))
    assert "training frames (budget)" in carried.describe()


def test_a_world_cut_again_keeps_a_subset_of_what_it_kept(
        tmp_path: Path, lineage: list[dict[str, Any]]) -> None:
    first = carry.carried_frames(_store(tmp_path / "a", "snap", lineage), ["snap"], 400)
    carried_on = [e for e in lineage if e["observation_id"] in first.entries]
    again = carry.carried_frames(_store(tmp_path / "b", "next", carried_on), ["next"], 400)
    assert set(again.entries) == set(first.entries), "the same budget keeps the same frames"
    tighter = carry.carried_frames(_store(tmp_path / "c", "next", carried_on), ["next"], 200)
    assert set(tighter.entries) < set(first.entries)


def test_fair_shares_give_small_worlds_all_and_the_rest_equal_parts() -> None:
    assert carry.fair_shares({"a": 500, "b": 50, "c": 300}, 400) == {"b": 50, "a": 175, "c": 175}
    assert carry.fair_shares({"a": 10, "b": 10}, 400) == {"a": 10, "b": 10}


def test_an_unknown_snapshot_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="include_snapshots_of"):
        carry.carried_frames(LocalFolderStore(tmp_path), ["nope"], 800)
