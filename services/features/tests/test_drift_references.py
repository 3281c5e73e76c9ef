"""The training reference of a served version, with each world's own holdout MAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeloop.contracts.registry.v1 import model_pb2, registry_service_pb2
from edgeloop.features.drift.references import ReferenceCache
from edgeloop.platform.objectstore import LocalFolderStore


class Registry:
    """GetModelVersion of one version, as the registry answers it."""

    def __init__(self, metrics: dict[str, float]) -> None:
        self.metrics = metrics

    async def GetModelVersion(self, request: Any, **_: Any) -> Any:  # noqa: N802 (gRPC name)
        version = model_pb2.ModelVersion(version="2",
                                         tags={"dataset_snapshot": "snap"}, metrics=self.metrics)
        return registry_service_pb2.GetModelVersionResponse(version=version)


async def test_each_world_gets_the_versions_holdout_mae_there(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    new_world = "parking@2026-12-02T11:17:51Z"  # how the trainer names a drift's world
    store.put("trainer/sweeps/snap/reference.json", json.dumps(
        {"holdout_mae_mm": None, "groups": {"parking": {}, new_world: {}, "unjudged": {}}},
    ).encode())
    metrics = {"holdout_mae_mm": 2.6, "holdout_mae_mm/world/parking": 2.2,
               "holdout_mae_mm/world/parking_2026-12-02T11_17_51Z": 3.4,
               "holdout_runs/world/parking": 5.0,
               "holdout_runs/world/parking_2026-12-02T11_17_51Z": 1.0,
               "champion_mae_mm/world/unjudged": 9.0}
    reference = await ReferenceCache(Registry(metrics), "token", store).get("distance", "2")
    assert reference is not None
    assert reference["holdout_mae_mm"] == 2.6
    groups = reference["groups"]
    assert (groups["parking"]["holdout_mae_mm"], groups["parking"]["holdout_runs"]) == (2.2, 5)
    assert (groups[new_world]["holdout_mae_mm"], groups[new_world]["holdout_runs"]) == (3.4, 1)
    assert "holdout_mae_mm" not in groups["unjudged"], "the champion's MAE is not the version's"
