"""``edgeloop demo --on-device``: the robots of the live runs predict on the device.

With the flag, every live run's robot predicts its frames itself with LiteRT (the
registry's TFLite export) instead of asking the gateway; the frames, labels and device
predictions still go up the stream, so drift detection and retraining work unchanged.
When the loop promotes a new version, each robot hears it on its stream, downloads and
verifies it and swaps on its own; :func:`report_lines` says when each robot switched. With
``--quantized-model`` the robots ask for each version's quantized twin and swap to it once the
gateway offers it (after its host checked the twin), so a version may appear twice.
A robot keeps one model store (``<state>/demo/devices/<device>``) across its runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.edge_client.inference.onboard import Inference, Onboard

_store_root: Path | None = None
_quantized = False
_robots: dict[str, Onboard] = {}


def enable(state_dir: Path, quantized: bool = False) -> None:
    """Turn on-device inference on for the demo's live runs (model stores under ``state_dir``);
    ``quantized``: the robots ask for quantized twins (``edgeloop-edge drive
    --quantized-model``) and run one once the gateway offers it."""
    global _store_root, _quantized  # noqa: PLW0603 - one demo per process; process-wide flags
    _store_root = state_dir / "demo" / "devices"
    _quantized = quantized


def enabled() -> bool:
    """Whether the demo's robots predict on the device."""
    return _store_root is not None


def session_kwargs(device_id: str) -> dict[str, Any]:
    """Extra ``drive_session_async`` arguments for a robot's live run ({} when off)."""
    if _store_root is None:
        return {}
    onboard = _robots.get(device_id)
    if onboard is None:
        onboard = Onboard.create(Inference.DEVICE, _store_root / device_id, quantized=_quantized)
        _robots[device_id] = onboard
    return {"onboard": onboard}


def report_lines() -> list[str]:
    """One line per robot: each version it predicted with, and when it took over."""
    lines = []
    for device_id, onboard in sorted(_robots.items()):
        switches = onboard.model.switches if onboard.model is not None else []
        if not switches:
            lines.append(f"{device_id}: no model downloaded")
            continue
        from datetime import UTC, datetime  # noqa: PLC0415

        steps = ", ".join(f"v{s.model_version}{' (quantized twin)' if s.quantized else ''} at "
                          f"{datetime.fromtimestamp(s.at_wall, UTC):%H:%M:%S.%f}"[:-3]
                          for s in switches)
        lines.append(f"{device_id}: on-device model {steps}")
    return lines
