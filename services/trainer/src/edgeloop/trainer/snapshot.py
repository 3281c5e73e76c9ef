"""Dataset snapshots: the frozen, hashed data of a sweep.

A snapshot is built once from ``FeatureStore.ListObservations`` (labelled only, with
JPEGs) and stored under ``trainer/sweeps/<snapshot_id>/``:

- ``manifest.json``: every observation used (id, image key, label, SHA-256 of the JPEG,
  deployment, time, split), the deployments, the time range and a content hash over all;
- ``arrays.npz`` (uncompressed, so members can be memory-mapped), format 2
  (``ARRAYS_FORMAT``, also in the manifest's ``arrays_format``):

  - ``images``: every frame as the model sees it after its own resize, float16
    [n, 75, 100, 3] in 0..255 (:func:`~edgeloop.trainer.model_input.resize_frames`: the
    model's Resizing layer, once, here, instead of in every epoch of every trial; the
    trials' model casts them to float32 and its resize is then the identity). Not uint8:
    rounding to whole levels would feed the network other numbers than it computes from
    the raw frame when served (the served model still takes the raw frame and resizes it
    itself). Float16 keeps every resized value to within 0.0625 of a level (11 significant
    bits, finer than the 8 of a bfloat16 trial's own arithmetic): trained models' answers
    moved by 0.003 mm on average, 0.021 at most, on a demo's holdouts, while each frame
    takes 45,000 bytes (float32: 90,000; a raw 320x240 frame 230,400), which every trial
    maps and the page cache holds (bench/README.md, "Snapshot images in float16").
    Archives written before hold float32 ``images``; trials read either.
  - ``holdout_frames``: the holdout's frames (split 2, in order) decoded raw, uint8 RGB at
    the camera's size: candidate and champion are judged through their serving signatures
    on what a robot sends.
  - ``labels`` (mm, float32), ``split`` (0 train, 1 validation, 2 holdout) and ``world``
    (index into the manifest's ``worlds``: training balances the worlds, see ``balance``).

  Format 1 (snapshots from before) has ``images`` as raw uint8 frames of every split and no
  ``holdout_frames``; :func:`load_snapshot` converts such a snapshot once into a format 2
  copy in the work folder (:func:`model_arrays_path`), and trials handed one still train
  (the model then resizes the frames itself, as it always did).
- ``reference.json``: the training reference for the drift monitor.

The train/validation/holdout split is drawn by a generator seeded from the content hash,
so the same data always splits the same way, and a re-run (``from_sweep``) reuses all of it.
It splits whole *drive units*, never single frames: consecutive frames of one approach run
are near-identical, so a frame-level holdout would sit right beside its training twins and
flatter the model. A unit is a run of one device session (frames less than
``RUN_GAP_S`` apart, at most ``MAX_UNIT_FRAMES`` long), and units are split per *world*
(the data of one drift period, see :func:`world_of`) so every world has a holdout of its
own; where the serving model answered every unit, the draw is stratified by its error, and
the units it erred most on either way train (:func:`assign_splits_by_error`). A fragment
of a run (a world's data cut at its start or end, a late frame) trains rather than
becoming a world's validation or holdout (:func:`judged_units`). Frames carried over from
an earlier snapshot (``include_snapshots_of``) keep that snapshot's split and world: the
champion's holdout stays unseen by both models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2,
    feature_store_service_pb2_grpc,
    observation_pb2,
)
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from edgeloop.platform.jpeg import decode as jpeg_decode
from edgeloop.platform.objectstore import LocalFolderStore, ObjectStore
from edgeloop.trainer.model_input import INPUT_SHAPE, resize_frames
from google.protobuf.timestamp_pb2 import Timestamp

log = logging.getLogger(__name__)
VALIDATION_FRACTION = 0.15
HOLDOUT_FRACTION = 0.15
SPLITS = ("train", "validation", "holdout")
STAT_NAMES = tuple(f.name for f in observation_pb2.ImageStats.DESCRIPTOR.fields)
HISTOGRAM_BINS = 20
RUN_GAP_S = 1.0
"""Frames further apart than this (a repositioning pause) belong to different runs."""
MAX_UNIT_FRAMES = 40
"""A run longer than this (10 s at 4 fps) is cut into several split units."""
FRAGMENT_SHARE = 0.5
"""A unit below this share of its world's median unit is a fragment: it trains (judged_units)."""
LIST_TIMEOUT_S = 300.0
IDS_PER_REQUEST = 2000
"""Observation ids per ListObservations when fetching the images of a capped selection."""
ARRAYS_FORMAT = 2
"""``arrays.npz`` layout: 2 = pre-resized ``images`` (float16; float32 before) + raw
``holdout_frames``."""
IMAGES_DTYPE = np.float16
"""How a snapshot stores its pre-resized frames (module docstring)."""
DECODE_CHUNK = 64
"""Frames decoded and resized at a time: the raw frames of a snapshot are never all in memory."""


def prefix(snapshot_id: str) -> str:
    """Object-store folder of a sweep's snapshot."""
    return f"trainer/sweeps/{snapshot_id}"


@dataclass
class Snapshot:
    """A built or reloaded snapshot: its manifest and where its arrays are on local disk."""

    snapshot_id: str
    manifest: dict[str, Any]
    arrays_path: Path

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    def to_proto(self) -> sweep_pb2.DatasetSnapshot:
        """The ``DatasetSnapshot`` message of this snapshot."""
        m = self.manifest
        counts = m["split_counts"]
        message = sweep_pb2.DatasetSnapshot(
            snapshot_id=self.snapshot_id,
            manifest_key=f"{prefix(self.snapshot_id)}/manifest.json",
            content_hash=self.content_hash,
            observation_count=len(m["observations"]),
            train_count=counts["train"],
            validation_count=counts["validation"],
            holdout_count=counts["holdout"],
            deployments=m["deployments"],
            label_min_mm=m["label_min_mm"],
            label_max_mm=m["label_max_mm"],
        )
        message.start_time.FromJsonString(m["start_time"])
        message.end_time.FromJsonString(m["end_time"])
        return message


def list_request(
    selection: sweep_pb2.DataSelection,
) -> feature_store_service_pb2.ListObservationsRequest:
    """The ListObservations query of a data selection (labelled frames with their JPEG)."""
    request = feature_store_service_pb2.ListObservationsRequest(
        deployments=selection.deployments,
        data_groups=selection.data_groups,
        labelled_only=True,
        include_jpeg=True,
    )
    if selection.HasField("start_time"):
        request.start_time.CopyFrom(selection.start_time)
    if selection.HasField("end_time"):
        request.end_time.CopyFrom(selection.end_time)
    return request


async def fetch_observations(
    channel: grpc.aio.Channel, request: feature_store_service_pb2.ListObservationsRequest
) -> list[observation_pb2.Observation]:
    """Stream the matching labelled observations that have their JPEG from the feature store."""
    return [o for o in await _fetch_labelled(channel, request) if o.jpeg]


async def fetch_selection(
    channel: grpc.aio.Channel, selection: sweep_pb2.DataSelection
) -> list[observation_pb2.Observation]:
    """The selection's labelled frames with their JPEGs, capped and balanced.

    With a cap or balancing, the rows are listed without images first and only the kept
    frames' images are fetched: a fleet's selection can hold many times the cap.
    """
    request = list_request(selection)
    if not (selection.max_observations or selection.balance_deployments):
        return await fetch_observations(channel, request)
    request.include_jpeg = False
    kept = apply_cap(await _fetch_labelled(channel, request), selection)
    found: list[observation_pb2.Observation] = []
    for start in range(0, len(kept), IDS_PER_REQUEST):
        ids = [o.observation_id for o in kept[start : start + IDS_PER_REQUEST]]
        request = feature_store_service_pb2.ListObservationsRequest(
            observation_ids=ids, labelled_only=True, include_jpeg=True)
        found += await fetch_observations(channel, request)
    return found


async def _fetch_labelled(
    channel: grpc.aio.Channel, request: feature_store_service_pb2.ListObservationsRequest
) -> list[observation_pb2.Observation]:
    stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
    found: list[observation_pb2.Observation] = []
    try:
        async for page in stub.ListObservations(request, timeout=LIST_TIMEOUT_S):
            found.extend(o for o in page.observations if o.HasField("sensor_mm"))
    except grpc.aio.AioRpcError as exc:
        raise Unavailable(
            f"features service: ListObservations failed: {exc.code().name} {exc.details()}"
        ) from exc
    return found


def apply_cap(
    observations: list[observation_pb2.Observation], selection: sweep_pb2.DataSelection
) -> list[observation_pb2.Observation]:
    """Balance across deployments and cap the count, keeping the newest; capture order kept."""
    by_deployment: dict[str, list[observation_pb2.Observation]] = defaultdict(list)
    for obs in observations:
        by_deployment[obs.deployment].append(obs)
    cap = selection.max_observations or len(observations)
    if selection.balance_deployments and by_deployment:
        share = min(min(len(v) for v in by_deployment.values()), cap // len(by_deployment))
        kept = [o for group in by_deployment.values() for o in _newest(group, share)]
    else:
        kept = _newest(observations, cap)
    return sorted(kept, key=lambda o: (o.time.ToNanoseconds(), o.observation_id))


def _newest(
    observations: list[observation_pb2.Observation], n: int
) -> list[observation_pb2.Observation]:
    ordered = sorted(observations, key=lambda o: (o.time.ToNanoseconds(), o.observation_id))
    return ordered[len(ordered) - n :] if n > 0 else []


def content_hash(entries: list[dict[str, Any]]) -> str:
    """SHA-256 over the ids, labels and image hashes, in manifest order."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(
            f"{entry['observation_id']}\t{entry['label_mm']:.3f}\t{entry['sha256']}\n".encode()
        )
    return digest.hexdigest()


def assign_splits(count: int, seed: int) -> np.ndarray:
    """0 train, 1 validation, 2 holdout for each of ``count`` items, from ``seed``.

    With fewer than three items there is no validation item, with one no holdout either.
    """
    order = np.random.default_rng(seed).permutation(count)
    n_holdout = max(1, round(count * HOLDOUT_FRACTION)) if count >= 2 else 0
    n_val = max(1, round(count * VALIDATION_FRACTION)) if count >= 3 else 0
    split = np.zeros(count, dtype=np.int8)
    split[order[:n_holdout]] = 2
    split[order[n_holdout : n_holdout + n_val]] = 1
    return split


def world_of(observation: observation_pb2.Observation, selection: sweep_pb2.DataSelection) -> str:
    """The world a newly selected frame belongs to: its deployment, and since when.

    A retraining selection starts at the drift's onset, so ``deployment@start`` names the
    new world apart from the data the same deployment sent before it.
    """
    if selection.HasField("start_time"):
        return f"{observation.deployment}@{selection.start_time.ToJsonString()}"
    return observation.deployment


def drive_units(entries: list[dict[str, Any]]) -> list[int]:
    """Per entry, the index of its drive unit (a run of one device session); see module doc."""
    seconds = [_seconds(e["time"]) for e in entries]
    order = sorted(range(len(entries)), key=lambda i: (entries[i].get("device_id", ""),
                                                       entries[i].get("session_id", ""),
                                                       seconds[i]))
    units = [0] * len(entries)
    unit, size, previous = -1, 0, None
    for index in order:
        entry = entries[index]
        key = (entry.get("device_id", ""), entry.get("session_id", ""))
        moment = seconds[index]
        if previous is None or key != previous[0] or moment - previous[1] > RUN_GAP_S \
                or size >= MAX_UNIT_FRAMES:
            unit, size = unit + 1, 0
        units[index], size, previous = unit, size + 1, (key, moment)
    return units


def _seconds(text: str) -> float:
    return timestamp(text).ToNanoseconds() / 1e9


BY_ERROR, AT_RANDOM = "by the serving version's error", "at random"
"""How a world's new runs were drawn (the manifest's ``split_drawn``)."""


def split_by_unit(entries: list[dict[str, Any]], seed: int,
                  train_ends: bool = True) -> tuple[list[str], dict[str, str]]:
    """The split of every entry, and how each world's new runs were drawn.

    A split is inherited when the entry has one, else drawn by unit per world: by the
    serving model's error where every unit has one (:func:`assign_splits_by_error`), else at
    random.
    """
    units = drive_units(entries)
    splits = _with_runs_completed([e.get("split", "") for e in entries], units)
    worlds: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        if not splits[index]:
            worlds.setdefault(entry.get("world", entry["deployment"]), []).append(index)
    how: dict[str, str] = {}
    for offset, (world, members) in enumerate(sorted(worlds.items())):
        sizes = Counter(units[i] for i in members)
        judged = judged_units(sizes)
        errors = unit_errors(entries, units, members)
        if all(unit in errors for unit in judged):
            drawn = assign_splits_by_error([errors[unit] for unit in judged], seed + offset,
                                           train_ends)
            how[world] = BY_ERROR
        else:
            drawn = assign_splits(len(judged), seed + offset)
            how[world] = AT_RANDOM
        part = dict.fromkeys(sizes, 0)  # fragments train
        part.update(zip(judged, drawn, strict=True))
        for index in members:
            splits[index] = SPLITS[part[units[index]]]
    _ensure_parts(splits, units, seed)
    return splits, how


def _with_runs_completed(splits: list[str], units: list[int]) -> list[str]:
    """``splits`` with the new frames of a run that an earlier snapshot held in part given
    that part's split: a snapshot ends in the middle of a run, and the rest of the run, drawn
    on its own, could land in the holdout beside its near-twins in training."""
    inherited: dict[int, str] = {}
    for unit, part in zip(units, splits, strict=True):
        if part:
            inherited.setdefault(unit, part)
    return [part or inherited.get(unit, "") for unit, part in zip(units, splits, strict=True)]


def unit_errors(entries: list[dict[str, Any]], units: list[int],
                members: list[int]) -> dict[int, float]:
    """The mean signed error (prediction − sensor, mm) of each of ``members``' units over its
    frames that the serving model answered; units none of whose frames were answered are
    left out."""
    found: dict[int, list[float]] = defaultdict(list)
    for index in members:
        if "error_mm" in entries[index]:
            found[units[index]].append(float(entries[index]["error_mm"]))
    return {unit: float(np.mean(errors)) for unit, errors in found.items()}


def assign_splits_by_error(errors: list[float], seed: int, train_ends: bool = True) -> np.ndarray:
    """Splits for units on which the serving model erred by ``errors`` (mean signed mm each):
    as many validation and holdout units as :func:`assign_splits` draws, stratified by error.

    The units are ordered by error; the two at its ends train whenever enough others remain,
    and the rest are cut into as many contiguous strata as there are units to judge, each
    giving one, drawn at random. A world's data can hold a kind of run the serving model
    gets badly wrong beside runs it nearly gets right: in the angled world of the quick
    demo of 2026-12-06 06:06, 5 of 29 runs erred by +35 to +53 mm and the others by −14 to
    +6. A random draw put both such runs of one retrain's snapshot into its validation and
    holdout, none into training, and the version it made missed that kind as its
    predecessor had (16–27 mm on those runs, 2–5 on the others). Ordered by error, the
    extremes train and every stratum of the error is judged too. ``train_ends=False`` (the
    strata alone) is there for the replay bench, which measured it worse (bench/README).
    """
    drawn = assign_splits(len(errors), seed)
    judged = np.sort(drawn[drawn > 0])
    if not len(judged):
        return drawn
    rng = np.random.default_rng(seed)
    order = np.argsort(np.asarray(errors, dtype=np.float64), kind="stable")
    if train_ends and len(order) - 2 >= len(judged):
        order = order[1:-1]
    split = np.zeros(len(errors), dtype=np.int8)
    for stratum, part in zip(np.array_split(order, len(judged)), rng.permutation(judged),
                             strict=True):
        split[rng.choice(stratum)] = part
    return split


def judged_units(sizes: Counter[int]) -> list[int]:
    """The units of one world that may become its validation or holdout (sorted).

    A world's data is cut at its start (a drift retrain selects from the change on) and at
    the snapshot's end, and a frame that arrives late starts a unit of its own: such
    fragments of a run hold a frame or a few. Drawn like whole runs, one became a new
    world's entire validation (1 frame of 107: the demo of 2026-12-05 12:25, phase 4), so
    the trials chose their epochs and their best trial blind to the new world. A unit
    smaller than ``FRAGMENT_SHARE`` of the world's median unit trains instead, as long as
    at least three units remain to draw from.
    """
    ordered = sorted(sizes)
    median = float(np.median([sizes[u] for u in ordered]))
    whole = [u for u in ordered if sizes[u] >= FRAGMENT_SHARE * median]
    return whole if len(whole) >= 3 else ordered


def _ensure_parts(splits: list[str], units: list[int], seed: int) -> None:
    """Worlds of one or two runs have no validation (or holdout) of their own; the trials
    and the gate need one overall, so a training unit moves there when none exists."""
    rng = np.random.default_rng(seed)
    for part in ("holdout", "validation"):
        if part in splits:
            continue
        training = sorted({units[i] for i, s in enumerate(splits) if s == "train"})
        if len(training) < 2:
            return
        chosen = training[int(rng.integers(len(training)))]
        for index, unit in enumerate(units):
            if unit == chosen:
                splits[index] = part


def decode_frame(obs: observation_pb2.Observation) -> np.ndarray:
    """One observation's JPEG as a uint8 RGB frame [h, w, 3] at its original size."""
    rgb = jpeg_decode(obs.jpeg, "RGB")
    if rgb is None:
        raise FailedPrecondition(f"observation {obs.observation_id}: its JPEG does not decode")
    return rgb


def decode_chunks(observations: list[observation_pb2.Observation],
                  chunk: int = DECODE_CHUNK) -> Iterator[np.ndarray]:
    """The frames, ``chunk`` at a time as uint8 [k, h, w, 3]; all must have one size.

    Every chunk is decoded into the same array, so a caller copies what it keeps: a fresh
    14 MB array per chunk cost more than the decoding (first-touch page faults; 43 ms per
    64 frames on the 2-core VM, against 16 ms for the decoding).
    """
    buffer: np.ndarray | None = None
    for start in range(0, len(observations), chunk):
        part = observations[start:start + chunk]
        for index, obs in enumerate(part):
            frame = decode_frame(obs)
            if buffer is None:
                buffer = np.empty((min(chunk, len(observations)), *frame.shape), np.uint8)
            elif frame.shape != buffer.shape[1:]:
                # one array per snapshot keeps trials simple; mixed cameras need separate sweeps
                raise FailedPrecondition(
                    f"data: the selected frames have different sizes ({buffer.shape[1:]} and "
                    f"{frame.shape}, observation {obs.observation_id}); select one camera's "
                    "deployments")
            buffer[index] = frame
        assert buffer is not None
        yield buffer[:len(part)]


def model_arrays(observations: list[observation_pb2.Observation],
                 split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (pre-resized, :data:`IMAGES_DTYPE`) and ``holdout_frames`` (raw uint8).

    Decoded and resized a chunk at a time: the raw frames of the whole selection (690 MB
    for 3,000 at 320x240) are never held at once, only the holdout's, written in place.
    """
    images = np.empty((len(observations), *INPUT_SHAPE), dtype=IMAGES_DTYPE)
    in_holdout = split == 2
    holdout: np.ndarray | None = None
    start = kept = 0
    for frames in decode_chunks(observations):
        if holdout is None:
            holdout = np.empty((int(in_holdout.sum()), *frames.shape[1:]), np.uint8)
        images[start:start + len(frames)] = resize_frames(frames)
        chosen = frames[in_holdout[start:start + len(frames)]]
        holdout[kept:kept + len(chosen)] = chosen
        start, kept = start + len(frames), kept + len(chosen)
    # an empty selection still gives the holdout its frame shape (the manifest's image_shape)
    return images, holdout if holdout is not None else np.zeros((0, *INPUT_SHAPE), np.uint8)


def build_manifest(
    snapshot_id: str,
    observations: list[observation_pb2.Observation],
    selection: sweep_pb2.DataSelection,
    seed: int,
    carried: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The manifest: entries, hash, split by drive unit and world, and ranges.

    ``carried`` maps observation ids of earlier snapshots to their ``world`` and ``split``
    there; those are kept. The split's seed is ``seed`` or else drawn from the hash.
    """
    carried = carried or {}
    entries = [
        {
            "observation_id": o.observation_id,
            "image_key": o.image_key,
            "label_mm": float(o.sensor_mm),
            "sha256": hashlib.sha256(o.jpeg).hexdigest(),
            "deployment": o.deployment,
            "device_id": o.device_id,
            "session_id": o.session_id,
            "time": o.time.ToJsonString(),
            "world": carried.get(o.observation_id, {}).get("world") or world_of(o, selection),
            "split": carried.get(o.observation_id, {}).get("split", ""),
            **({"error_mm": round(o.prediction_mm - o.sensor_mm, 2)}
               if o.HasField("prediction_mm") else {}),
        }
        for o in observations
    ]
    digest = content_hash(entries)
    seed = (seed or int(digest[:8], 16)) % 2**32  # 32 bits: what Keras and Ray accept
    splits, drawn = split_by_unit(entries, seed)
    for entry, part in zip(entries, splits, strict=True):
        entry["split"] = part
    labels = [e["label_mm"] for e in entries]
    return {
        "snapshot_id": snapshot_id,
        "content_hash": digest,
        "seed": seed,
        "selection": _selection_json(selection),
        "observations": entries,
        "deployments": sorted({e["deployment"] for e in entries}),
        "worlds": sorted({e["world"] for e in entries}),
        "start_time": entries[0]["time"],
        "end_time": entries[-1]["time"],
        "label_min_mm": min(labels),
        "label_max_mm": max(labels),
        "split_counts": {name: sum(e["split"] == name for e in entries) for name in SPLITS},
        "split_drawn": drawn,
    }


def describe_split(manifest: dict[str, Any]) -> str:
    """How the manifest's new runs were split, for the SNAPSHOT_BUILT event's note
    (e.g. "; new runs split by the serving version's error in 1 world"), or nothing."""
    counts = Counter(manifest.get("split_drawn", {}).values())
    if not counts:
        return ""
    return "; new runs split " + ", ".join(
        f"{how} in {n} world{'s' if n > 1 else ''}" for how, n in sorted(counts.items()))


def _selection_json(selection: sweep_pb2.DataSelection) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(selection, preserving_proto_field_name=True)


def _world(observations: list[observation_pb2.Observation], labels: np.ndarray) -> dict[str, Any]:
    """Per statistic histogram, mean, std and range, and the label histogram, of one world."""
    stats: dict[str, Any] = {}
    for name in STAT_NAMES:
        values = np.array([getattr(o.stats, name) for o in observations], dtype=np.float64)
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        stats[name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }
    counts, edges = np.histogram(labels, bins=HISTOGRAM_BINS)
    return {
        "stats": stats,
        "label_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "sample_count": int(len(labels)),
    }


def build_reference(
    observations: list[observation_pb2.Observation], labels: np.ndarray,
    worlds: list[str] | None = None,
) -> dict[str, Any]:
    """The drift monitor's reference: the whole snapshot, and each world apart.

    ``labels`` and ``worlds`` are in ``observations`` order; ``worlds`` defaults to each
    frame's deployment. ``groups`` holds one entry per world: a model retrained on an old
    and a new world is compared with each of them, so neither looks like drift to it (see
    the monitor's signals).
    """
    worlds = worlds or [o.deployment for o in observations]
    members: dict[str, list[int]] = {}
    for index, world in enumerate(worlds):
        members.setdefault(world, []).append(index)
    return {
        **_world(observations, labels),
        "label_min_mm": float(labels.min()),
        "label_max_mm": float(labels.max()),
        "label_mean_mm": float(labels.mean()),
        "label_std_mm": float(labels.std()),
        "holdout_mae_mm": None,
        "groups": {
            name: _world([observations[i] for i in indexes], labels[indexes])
            for name, indexes in sorted(members.items())
        },
    }


def mapped_member(arrays_path: Path, name: str) -> np.ndarray:
    """A member of an uncompressed ``.npz`` (what :func:`build_snapshot` writes), memory-mapped.

    Reading a few rows of ``images`` this way touches only their pages, where
    ``np.load(...)["images"]`` reads the whole array. A compressed member is loaded instead.
    """
    with zipfile.ZipFile(arrays_path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        with np.load(arrays_path) as data:
            return data[name]
    with open(arrays_path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the local file header; its name and extra field follow
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    return np.memmap(arrays_path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def local_arrays_path(store: ObjectStore, work_dir: Path, snapshot_id: str) -> Path:
    """Where trials read the arrays: the object file itself for a local store, else a cache."""
    key = f"{prefix(snapshot_id)}/arrays.npz"
    if isinstance(store, LocalFolderStore):
        return store.root / key
    return work_dir / key


def build_snapshot(
    snapshot_id: str,
    observations: list[observation_pb2.Observation],
    selection: sweep_pb2.DataSelection,
    seed: int,
    store: ObjectStore,
    work_dir: Path,
    min_observations: int,
    carried: dict[str, dict[str, str]] | None = None,
) -> Snapshot:
    """Freeze ``observations`` into a snapshot in the object store (blocking; run in a thread).

    ``carried``: world and split of frames from earlier snapshots (:mod:`edgeloop.trainer.carry`).
    """
    if len(observations) < min_observations:
        raise FailedPrecondition(
            f"data: the selection matches {len(observations)} labelled observations; "
            f"a sweep needs at least {min_observations}"
        )
    manifest = build_manifest(snapshot_id, observations, selection, seed, carried)
    labels = np.array([e["label_mm"] for e in manifest["observations"]], dtype=np.float32)
    split = np.array([SPLITS.index(e["split"]) for e in manifest["observations"]], dtype=np.int8)
    world = np.array([manifest["worlds"].index(e["world"]) for e in manifest["observations"]],
                     dtype=np.int16)
    images, holdout_frames = model_arrays(observations, split)
    manifest["image_shape"] = list(holdout_frames.shape[1:])  # the camera's frame size
    manifest["input_shape"] = list(images.shape[1:])
    manifest["arrays_format"] = ARRAYS_FORMAT
    _write_arrays(store, work_dir, snapshot_id, images=images, holdout_frames=holdout_frames,
                  labels=labels, split=split, world=world)
    del images, holdout_frames  # the archive holds them now
    base = prefix(snapshot_id)
    worlds = [e["world"] for e in manifest["observations"]]
    reference = build_reference(observations, labels, worlds)
    store.put(f"{base}/reference.json", _dumps(reference), "application/json")
    # the manifest goes last: its presence marks a complete snapshot
    store.put(f"{base}/manifest.json", _dumps(manifest), "application/json")
    log.info(
        "snapshot built",
        extra={
            "snapshot_id": snapshot_id,
            "observations": len(labels),
            "content_hash": manifest["content_hash"],
        },
    )
    return Snapshot(snapshot_id, manifest, local_arrays_path(store, work_dir, snapshot_id))


def _write_arrays(store: ObjectStore, work_dir: Path, snapshot_id: str,
                  **arrays: np.ndarray) -> None:
    """Write ``arrays.npz`` to where trials read it, and store it.

    The archive goes straight to a file beside that place, never to memory: 350 MB for
    3,000 frames, which a buffer held on top of the arrays themselves. A local store then
    links the file into place; for S3 it is uploaded and stays as the node's cache.
    """
    target = local_arrays_path(store, work_dir, snapshot_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{uuid.uuid4().hex}"  # skipped by the store's listing
    try:
        with open(staging, "wb") as out:
            np.savez(out, **arrays)
        store.put_file(f"{prefix(snapshot_id)}/arrays.npz", staging)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)


def _cache(store: ObjectStore, work_dir: Path, snapshot_id: str, data: bytes | memoryview) -> None:
    if not isinstance(store, LocalFolderStore):
        path = local_arrays_path(store, work_dir, snapshot_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def read_manifest(store: ObjectStore, snapshot_id: str, field: str) -> dict[str, Any]:
    """A stored snapshot's manifest; INVALID_ARGUMENT naming the request's ``field`` when
    that sweep has none."""
    try:
        return json.loads(store.get(f"{prefix(snapshot_id)}/manifest.json"))
    except NotFound as exc:
        raise InvalidArgument(field, f"sweep {snapshot_id!r} has no dataset snapshot") from exc


def load_snapshot(snapshot_id: str, store: ObjectStore, work_dir: Path) -> Snapshot:
    """Reload a stored snapshot (``from_sweep``), checking its hash; arrays cached locally."""
    manifest = read_manifest(store, snapshot_id, "from_sweep")
    if content_hash(manifest["observations"]) != manifest["content_hash"]:
        raise FailedPrecondition(
            f"from_sweep: the manifest of {snapshot_id} does not match its hash"
        )
    path = local_arrays_path(store, work_dir, snapshot_id)
    if not path.exists():
        _cache(store, work_dir, snapshot_id, store.get(f"{prefix(snapshot_id)}/arrays.npz"))
    if arrays_format(path) < ARRAYS_FORMAT:
        path = upgrade_arrays(path, model_arrays_path(work_dir, snapshot_id))
    return Snapshot(snapshot_id, manifest, path)


def arrays_format(arrays_path: Path) -> int:
    """The layout of an ``arrays.npz``: 2 with ``holdout_frames`` (see the module doc), else 1."""
    with zipfile.ZipFile(arrays_path) as archive:
        return ARRAYS_FORMAT if "holdout_frames.npy" in archive.namelist() else 1


def model_arrays_path(work_dir: Path, snapshot_id: str) -> Path:
    """Where the format 2 copy of an older snapshot's arrays is kept (never in the store)."""
    return work_dir / prefix(snapshot_id) / f"arrays.v{ARRAYS_FORMAT}.npz"


def upgrade_arrays(old: Path, target: Path) -> Path:
    """A format 1 ``arrays.npz`` converted to format 2 at ``target`` (once; reused after).

    The raw frames are read through a memory map and resized a chunk at a time, as a new
    snapshot's are; the stored snapshot itself is left as it is (its hash covers the manifest).
    """
    if target.exists():
        return target
    frames = mapped_member(old, "images")
    with np.load(old) as data:
        rest = {name: data[name] for name in data.files if name != "images"}
    holdout = np.asarray(frames[np.flatnonzero(rest["split"] == 2)])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    with open(partial, "wb") as handle:
        np.savez(handle, images=resize_frames(frames).astype(IMAGES_DTYPE),
                 holdout_frames=holdout, **rest)
    os.replace(partial, target)  # whole or absent, even with two sweeps reusing it at once
    log.info("snapshot arrays converted to format 2", extra={"path": str(target)})
    return target


def load_reference(store: ObjectStore, snapshot_id: str) -> dict[str, Any]:
    """A snapshot's reference.json."""
    return json.loads(store.get(f"{prefix(snapshot_id)}/reference.json"))


def save_reference(store: ObjectStore, snapshot_id: str, reference: dict[str, Any]) -> None:
    """Write a snapshot's reference.json back (after the holdout MAE is known)."""
    store.put(f"{prefix(snapshot_id)}/reference.json", _dumps(reference), "application/json")


def timestamp(text: str) -> Timestamp:
    """A Timestamp from RFC 3339 text."""
    ts = Timestamp()
    ts.FromJsonString(text)
    return ts


async def fetch_observations_meta(
    channel: grpc.aio.Channel, request: feature_store_service_pb2.ListObservationsRequest
) -> int:
    """How many labelled observations a query matches (no JPEGs transferred)."""
    request.include_jpeg = False
    return len(await _fetch_labelled(channel, request))
