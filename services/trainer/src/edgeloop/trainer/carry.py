"""What a retrain carries of its lineage: every judged frame, a budget of training frames.

A drift retrain names the serving version's snapshot in ``include_snapshots_of`` so the
candidate does not forget the worlds that version knows; that snapshot carried its own
predecessor's, and so on. Carried whole, every drift adds a world for good and every later
retrain trains on all of them: in the full demo of 2026-12-02 the fifth retrain's snapshot
held 1,447 training frames of five earlier worlds beside 67 of the new one, and a fleet that
drifts weekly would train on a year of worlds.

So the training frames of the carried worlds share a budget (``EDGELOOP_CARRIED_TRAIN_FRAMES``,
0 = no budget): worlds smaller than an equal share keep all theirs, the rest split what is
left equally. A world keeps whole drive runs (never frames of a run), chosen by a stable
hash of each run's first observation, so a world cut again by a later retrain keeps a subset
of what it kept before instead of a fresh draw. Validation and holdout frames are always
carried whole: the gate judges every world on its holdout, and the champion's holdout must
stay unseen by both models. They cost inference only, not training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from edgeloop.platform.objectstore import ObjectStore
from edgeloop.trainer.snapshot import drive_units, read_manifest


@dataclass(frozen=True)
class Carried:
    """The frames a snapshot takes over from earlier ones, and what the budget left out."""

    entries: dict[str, dict[str, str]]
    """Per observation id: its ``world`` and ``split`` in the earlier snapshot."""
    left_out: frozenset[str]
    """Training frames of the earlier snapshots the budget left out: a new selection that
    matches them must not bring them back as frames of a new world (with a new split)."""

    @property
    def training_kept(self) -> int:
        """Training frames carried."""
        return sum(e["split"] == "train" for e in self.entries.values())

    @property
    def training_offered(self) -> int:
        """Training frames the earlier snapshots held (only training frames are left out)."""
        return self.training_kept + len(self.left_out)

    def describe(self) -> str:
        """A short phrase for the sweep's SNAPSHOT_BUILT event."""
        worlds = len({e["world"] for e in self.entries.values()})
        text = f"carried {len(self.entries)} frames of {worlds} earlier worlds"
        if self.training_kept < self.training_offered:
            text += (f", {self.training_kept} of their {self.training_offered} training "
                     "frames (budget)")
        return text


def manifest_entries(store: ObjectStore, snapshot_id: str) -> list[dict[str, Any]]:
    """The manifest entries of an earlier snapshot; the world defaults to the deployment
    (snapshots from before worlds existed)."""
    manifest = read_manifest(store, snapshot_id, "data.include_snapshots_of")
    return [{**e, "world": e.get("world") or e["deployment"]} for e in manifest["observations"]]


def carried_frames(store: ObjectStore, snapshot_ids: list[str], budget: int) -> Carried:
    """The frames of ``snapshot_ids`` a new snapshot carries, ``budget`` training frames at
    most (0 = all), with their world and split."""
    entries: dict[str, dict[str, Any]] = {}
    for snapshot_id in snapshot_ids:
        for entry in manifest_entries(store, snapshot_id):
            entries.setdefault(entry["observation_id"], entry)
    training = [e for e in entries.values() if e.get("split") == "train"]
    kept_training = within_budget(training, budget)
    kept_ids = {e["observation_id"] for e in kept_training}
    kept = {i: {"world": e["world"], "split": e.get("split", "")} for i, e in entries.items()
            if e.get("split") != "train" or i in kept_ids}
    return Carried(kept, frozenset(entries) - frozenset(kept))


def within_budget(training: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Whole drive runs of ``training`` (manifest entries), ``budget`` frames at most shared
    fairly across worlds; all of them when they fit or ``budget`` is 0."""
    if budget <= 0 or len(training) <= budget:
        return training
    by_world: dict[str, list[dict[str, Any]]] = {}
    for entry in training:
        by_world.setdefault(entry["world"], []).append(entry)
    kept: list[dict[str, Any]] = []
    for world, quota in fair_shares({w: len(v) for w, v in by_world.items()}, budget).items():
        kept += _whole_runs(by_world[world], quota)
    return kept


def fair_shares(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Per world, how many of its frames fit: smaller worlds whole, the rest equal shares."""
    shares: dict[str, int] = {}
    left = budget
    ordered = sorted(sizes.items(), key=lambda item: (item[1], item[0]))
    for index, (world, size) in enumerate(ordered):
        shares[world] = min(size, left // (len(ordered) - index))
        left -= shares[world]
    return shares


def _whole_runs(entries: list[dict[str, Any]], quota: int) -> list[dict[str, Any]]:
    """Runs of one world in a stable order, each taken whole while it fits in ``quota``
    (the first always, so no world is left without training frames)."""
    runs: dict[int, list[dict[str, Any]]] = {}
    for entry, unit in zip(entries, drive_units(entries), strict=True):
        runs.setdefault(unit, []).append(entry)
    ordered = sorted(runs.values(), key=_run_key)
    kept: list[dict[str, Any]] = []
    for run in ordered:
        if not kept or len(kept) + len(run) <= quota:
            kept += run
    return kept


def _run_key(run: list[dict[str, Any]]) -> str:
    first = min(run, key=lambda e: (e["time"], e["observation_id"]))
    return hashlib.sha256(first["observation_id"].encode()).hexdigest()
