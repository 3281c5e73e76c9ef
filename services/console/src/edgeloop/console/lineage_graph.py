"""The lineage of a model version drawn as a graph: drift event → sweep → snapshot → MLflow
runs → version → deployments → first predictions.

Gathered the way `edgeloop lineage` gathers it (compose/lineage.py), through the same
contracts: the version's tags (``sweep_id``, ``trigger``), the trainer's sweep, the drift
event named by the trigger, the deployments whose arms resolve to the version, and the
first observations it answered. Laid out in columns, one per stage, for an SVG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeloop.console.backends import Backends
from edgeloop.console.links import Links
from edgeloop.contracts.trainer.v1 import sweep_pb2

DRIFT_TRIGGER = "drift:"
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 46, 40, 14, 10
FIRST_PREDICTIONS = 5


@dataclass
class Node:
    """One box of the graph."""

    key: str
    stage: str
    title: str
    detail: str = ""
    href: str = ""
    x: int = 0
    y: int = 0


@dataclass
class Graph:
    """Columns of nodes, edges between neighbouring columns, and the SVG size."""

    columns: list[list[Node]] = field(default_factory=list)
    edges: list[tuple[Node, Node]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    @property
    def nodes(self) -> list[Node]:
        return [n for column in self.columns for n in column]


def _state(sweep: sweep_pb2.Sweep) -> str:
    return sweep_pb2.SweepState.Name(sweep.state).removeprefix("SWEEP_STATE_").lower()


async def lineage_graph(backends: Backends, links: Links, model: str, version: str) -> Graph:
    """Gather and lay out the lineage of ``model`` ``version``."""
    found = await backends.version(model, version)
    sweep = await backends.sweep(found.tags.get("sweep_id", ""))
    trigger = sweep.trigger if sweep else found.tags.get("trigger", "")
    columns: list[list[Node]] = []
    if trigger.startswith(DRIFT_TRIGGER):
        event_id = trigger.removeprefix(DRIFT_TRIGGER)
        events = [e for e in await backends.drift_events(limit=1000) if e.event_id == event_id]
        columns.append([Node(f"event:{event_id}", "drift event",
                             f"drift: {events[0].rule}" if events else "drift event",
                             f"{events[0].deployment}" if events else event_id[:8],
                             f"/drift/{events[0].deployment}" if events else "")])
    if sweep is not None:
        columns.append([Node(f"sweep:{sweep.sweep_id}", "sweep", f"sweep {sweep.sweep_id[:8]}",
                             f"{_state(sweep)}, {len(sweep.trials)} trials",
                             f"/sweeps/{sweep.sweep_id}")])
        if sweep.dataset.snapshot_id:
            columns.append([Node(f"snapshot:{sweep.dataset.snapshot_id}", "dataset snapshot",
                                 f"snapshot {sweep.dataset.snapshot_id[:8]}",
                                 f"{sweep.dataset.observation_count} observations")])
        if sweep.mlflow_parent_run_id:
            columns.append([Node(f"run:{sweep.mlflow_parent_run_id}", "MLflow parent run",
                                 f"run {sweep.mlflow_parent_run_id[:8]}", sweep.experiment,
                                 links.mlflow_run(sweep.mlflow_experiment_id,
                                                  sweep.mlflow_parent_run_id))])
        trials = [Node(f"trial:{t.trial_id}", "trial", f"trial {t.trial_id[-8:]}",
                       f"val MAE {t.best_val_mae_mm:.1f} mm"
                       + (" (best)" if t.trial_id == sweep.best_trial_id else ""),
                       links.mlflow_run(sweep.mlflow_experiment_id, t.mlflow_run_id))
                  for t in sweep.trials]
        if trials:
            columns.append(trials)
    holdout = found.metrics.get("holdout_mae_mm")
    columns.append([Node(f"version:{model}:{version}", "version", f"{model} v{version}",
                         (f"holdout MAE {holdout:.1f} mm" if holdout is not None else "")
                         + (f" @{', @'.join(found.aliases)}" if found.aliases else ""),
                         f"/models/{model}/{version}")])
    serving = [Node(f"deployment:{d.name}:{arm.arm}", "deployment", d.name, f"arm {arm.arm}",
                    f"/deployments/{d.name}")
               for d in await backends.deployments() for arm in d.resolved
               if arm.model_name == model and arm.model_version == version]
    if serving:
        columns.append(serving)
    first = await backends.observations(model_name=model, model_version=version,
                                        limit=FIRST_PREDICTIONS)
    predictions = [Node(f"frame:{o.observation_id}", "prediction",
                        f"frame …{o.observation_id[-8:]}",
                        f"{o.prediction_mm:.0f} mm on {o.device_id}"[:32],
                        f"/frames/{o.observation_id}") for o in first]
    if predictions:
        columns.append(predictions)
    return _layout(columns)


def _layout(columns: list[list[Node]]) -> Graph:
    graph = Graph(columns=columns)
    tallest = max((len(c) for c in columns), default=1)
    graph.height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    graph.width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    for i, column in enumerate(columns):
        used = len(column) * NODE_H + (len(column) - 1) * GAP_Y
        top = PAD + (graph.height - 2 * PAD - used) // 2
        for j, node in enumerate(column):
            node.x, node.y = PAD + i * (NODE_W + GAP_X), top + j * (NODE_H + GAP_Y)
    for left, right in zip(columns, columns[1:], strict=False):
        graph.edges += [(a, b) for a in left for b in right]
    return graph
