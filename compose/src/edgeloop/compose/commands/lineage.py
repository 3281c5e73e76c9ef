"""`edgeloop lineage`: a model version's chain, or one observation's."""

from __future__ import annotations

import click
import grpc
from edgeloop.compose.commands._registry import registry_token
from edgeloop.compose.endpoints import address, client_tls
from edgeloop.compose.lineage import (
    ModelLineage,
    ObservationLineage,
    model_lineage,
    observation_lineage,
    open_clients,
)
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from rich.console import Console
from rich.tree import Tree


def _when(stamp) -> str:  # noqa: ANN001 - a protobuf Timestamp
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if stamp.seconds else "-"


def _event_text(event: observation_pb2.DriftEvent) -> str:
    kind = observation_pb2.DriftKind.Name(event.kind).removeprefix("DRIFT_KIND_").lower()
    value = event.values.get("value")
    shown = f"{value:.3g}" if value is not None else "?"
    return (f"drift event {event.event_id}: rule [bold]{event.rule}[/] ({kind}) on "
            f"{event.deployment} serving {event.model_name}@{event.model_version}: value {shown} "
            f"{event.threshold}, fired {_when(event.fired_at)}"
            + (f" — {event.note}" if event.note else ""))


def _add_sweep(node: Tree, sweep: sweep_pb2.Sweep) -> None:
    state = sweep_pb2.SweepState.Name(sweep.state).removeprefix("SWEEP_STATE_").lower()
    branch = node.add(f"sweep {sweep.sweep_id} ({state}, trigger {sweep.trigger}, "
                      f"trace {sweep.trace_id or '-'})")
    data = sweep.dataset
    if data.snapshot_id:
        branch.add(f"dataset snapshot {data.snapshot_id}: {data.observation_count} observations "
                   f"(train {data.train_count}, validation {data.validation_count}, holdout "
                   f"{data.holdout_count}) from {', '.join(data.deployments) or '-'}, "
                   f"{_when(data.start_time)} → {_when(data.end_time)}, labels "
                   f"{data.label_min_mm:.0f}–{data.label_max_mm:.0f} mm, "
                   f"hash {data.content_hash[:12]}")
    if sweep.warm_start_version:
        branch.add(f"fine-tuned from {sweep.model_name}@{sweep.warm_start_version}")
    runs = branch.add(f"MLflow parent run {sweep.mlflow_parent_run_id or '-'} "
                      f"(experiment {sweep.experiment or '-'})")
    for trial in sweep.trials:
        best = " [green]best[/]" if trial.trial_id == sweep.best_trial_id else ""
        runs.add(f"trial {trial.trial_id}: run {trial.mlflow_run_id or '-'}, val MAE "
                 f"{trial.best_val_mae_mm:.2f} mm after {trial.epochs_done} epochs{best}")


def _model_tree(lineage: ModelLineage) -> Tree:
    version = lineage.version
    tree = Tree(f"[bold]{version.model_name}@{version.version}[/]")
    if lineage.drift_event is not None:
        tree.add(_event_text(lineage.drift_event))
    if lineage.sweep is not None:
        _add_sweep(tree, lineage.sweep)
    else:
        tree.add(f"no sweep recorded (trigger {version.tags.get('trigger', '-')})")
    holdout = version.metrics.get("holdout_mae_mm")
    tree.add(f"registered version {version.version}: run {version.run_id}, holdout MAE "
             f"{holdout:.2f} mm" if holdout is not None
             else f"registered version {version.version}: run {version.run_id}")
    tree.add(f"aliases: {', '.join(version.aliases) or '-'}; "
             f"git {version.tags.get('git_sha', '-')[:12]}")
    serving = tree.add("deployments using it now")
    for deployment, arm in lineage.deployments or [("-", "-")]:
        serving.add(f"{deployment} (arm {arm})")
    served = tree.add("first predictions it served")
    for obs in lineage.first_predictions:
        served.add(f"{_when(obs.time)} observation {obs.observation_id} on {obs.deployment} "
                   f"({obs.device_id}), trace {obs.trace_id or '-'}")
    return tree


def _observation_tree(lineage: ObservationLineage) -> Tree:
    obs = lineage.observation
    tree = Tree(f"[bold]observation {obs.observation_id}[/] "
                f"({_when(obs.time)}, device {obs.device_id})")
    answered = (f"{obs.model_name}@{obs.model_version}" if obs.model_name else "no model")
    prediction = f"{obs.prediction_mm:.1f} mm" if obs.HasField("prediction_mm") else "none"
    sensor = f"{obs.sensor_mm:.1f} mm" if obs.HasField("sensor_mm") else "none"
    tree.add(f"answered by {answered} on deployment {obs.deployment}, arm {obs.arm or '-'}: "
             f"prediction {prediction}, sensor {sensor}, trace {obs.trace_id or '-'}")
    used = tree.add("sweeps that trained on it")
    for sweep in lineage.sweeps or []:
        used.add(f"sweep {sweep.sweep_id} → {sweep.model_name}@{sweep.model_version or '-'}"
                 f" (trigger {sweep.trigger})")
    if not lineage.sweeps:
        used.add("none")
    return tree


@click.command("lineage")
@click.argument("model_at_version", required=False)
@click.option("--observation", "observation_id", default="", help="Trace one observation instead.")
@click.option("--predictions", default=5, show_default=True, help="First predictions to show.")
def command(model_at_version: str | None, observation_id: str, predictions: int) -> None:
    """Print the lineage of MODEL@VERSION, or of one observation with --observation ID.

    A version: drift event → sweep → dataset snapshot → MLflow parent run and trials →
    registered version → deployments using it → the first predictions it served.
    """
    if bool(model_at_version) == bool(observation_id):
        raise click.UsageError("give MODEL@VERSION or --observation ID")
    clients, channels = open_clients(address("registry"), address("trainer"), address("features"),
                                     registry_token(), client_tls("registry"))
    try:
        if observation_id:
            tree = _observation_tree(observation_lineage(clients, observation_id))
        else:
            model, _, version = (model_at_version or "").partition("@")
            if not model or not version:
                raise click.BadParameter("expected MODEL@VERSION, e.g. distance@3")
            tree = _model_tree(model_lineage(clients, model, version, predictions))
    except grpc.RpcError as exc:
        raise click.ClickException(f"{exc.code().name}: {exc.details()}") from exc
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for channel in channels:
            channel.close()
    Console(width=160).print(tree)
