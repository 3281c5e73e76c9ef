"""`edgeloop sweeps`: start, watch, list, cancel and re-run training sweeps.

Talks to the trainer (``edgeloop.compose.endpoints.address("trainer")``) through its
gRPC contract. ``watch`` (and ``start``/``rerun`` unless ``--no-watch``) shows a live
table of the trials while the sweep runs and ends with the sweep's outcome; the exit
code is 0 for a succeeded sweep, 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click
import grpc
from edgeloop.compose.commands._registry import parse_selector
from edgeloop.compose.endpoints import call_error, channel
from edgeloop.compose.views import Listing, output_option, short_time, show_listings, timestamp
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2, trainer_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

S = sweep_pb2
pb = trainer_service_pb2
UNARY_TIMEOUT_S = 60.0
CANCEL_TIMEOUT_S = 180.0
STATE_STYLE = {
    "QUEUED": "yellow",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
}


def _state(value: int) -> str:
    return S.SweepState.Name(value).removeprefix("SWEEP_STATE_")


def _console() -> Console:
    """The output console; wide when piped, so tables stay one line per row for grep."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


@contextmanager
def _trainer() -> Iterator[trainer_service_pb2_grpc.TrainerServiceStub]:
    """A stub for the trainer; gRPC errors become one clear CLI error line."""
    with channel("trainer") as opened:
        try:
            yield trainer_service_pb2_grpc.TrainerServiceStub(opened)
        except grpc.RpcError as exc:
            raise call_error("trainer", exc) from exc


@click.group("sweeps")
def command() -> None:
    """Hyperparameter sweeps of the trainer (Ray Tune + MLflow)."""


def _space_options(func):  # noqa: ANN001, ANN202 - click decorator stack
    options = [
        click.option(
            "--lr",
            "learning_rates",
            multiple=True,
            type=float,
            help="learning rate to try (repeat)",
        ),
        click.option(
            "--batch-size",
            "batch_sizes",
            multiple=True,
            type=int,
            help="batch size to try (repeat)",
        ),
        click.option(
            "--dropout", "dropouts", multiple=True, type=float, help="dropout to try (repeat)"
        ),
        click.option(
            "--filters", multiple=True, type=int, help="first conv block's filters (repeat)"
        ),
        click.option("--epochs", multiple=True, type=int, help="max epochs per trial (repeat)"),
        click.option(
            "--architecture",
            "architectures",
            multiple=True,
            help="model variation: thesis, small, wide (repeat)",
        ),
        click.option("--dense-units", multiple=True, type=int, help="dense layer width (repeat)"),
        click.option("--trials", type=int, default=0, show_default="4", help="number of trials"),
        click.option(
            "--concurrency", type=int, default=0, help="max parallel trials (0 = fit the CPUs)"
        ),
        click.option(
            "--seed", type=int, default=0, help="sampling/split seed (0 = from the snapshot)"
        ),
        click.option(
            "--promote/--no-promote", default=False, help="ask the registry's gate to promote"
        ),
        click.option(
            "--warm-start",
            default=None,
            metavar="VERSION",
            help="fine-tune this version (3, @champion or latest) instead of training from "
            "scratch; trials keep its architecture, filters and dense units",
        ),
        click.option("--watch/--no-watch", default=True, help="follow the sweep live"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _space(opts: dict) -> S.SearchSpace:
    return S.SearchSpace(
        learning_rates=opts["learning_rates"],
        batch_sizes=opts["batch_sizes"],
        dropouts=opts["dropouts"],
        filters=opts["filters"],
        epochs=opts["epochs"],
        architectures=opts["architectures"],
        dense_units=opts["dense_units"],
    )


def _request(opts: dict, **fields: object) -> pb.StartSweepRequest:
    return pb.StartSweepRequest(
        search_space=_space(opts),
        num_trials=opts["trials"],
        max_concurrent_trials=opts["concurrency"],
        seed=opts["seed"],
        promote=opts["promote"],
        warm_start=parse_selector(str(opts["warm_start"])) if opts["warm_start"] else None,
        **fields,
    )


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


@command.command("start")
@click.option("--model", default="distance", show_default=True, help="registered model to train")
@click.option("--experiment", default="", help="MLflow experiment (default: the model name)")
@click.option(
    "--deployment", "deployments", multiple=True, help="train on this deployment's data (repeat)"
)
@click.option(
    "--data-group", "data_groups", multiple=True, help="train on this data group (repeat)"
)
@click.option("--since", type=click.DateTime(), default=None, help="earliest capture time (UTC)")
@click.option(
    "--until", type=click.DateTime(), default=None, help="latest capture time (UTC, exclusive)"
)
@click.option(
    "--max-observations", type=int, default=0,
    help="cap the frames the selection adds (newest kept; 0 = all)"
)
@click.option("--balance", is_flag=True, help="take equally many frames per deployment")
@click.option(
    "--include-snapshot-of", "include", multiple=True, help="add an earlier sweep's data (repeat)"
)
@click.option("--for-deployment", "target", default="", help="deployment the model is for (gate)")
@click.option("--trigger", default="manual", show_default=True, help="what started the sweep")
@_space_options
def start(
    model: str,
    experiment: str,
    deployments: tuple[str, ...],
    data_groups: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    max_observations: int,
    balance: bool,
    include: tuple[str, ...],
    target: str,
    trigger: str,
    **opts: object,
) -> None:
    """Start a sweep on a fresh dataset snapshot."""
    data = S.DataSelection(
        deployments=deployments,
        data_groups=data_groups,
        start_time=_timestamp(since),
        end_time=_timestamp(until),
        max_observations=max_observations,
        balance_deployments=balance,
        include_snapshots_of=include,
    )
    request = _request(
        opts, model_name=model, experiment=experiment, trigger=trigger, data=data, deployment=target
    )
    _start(request, bool(opts["watch"]))


@command.command("rerun")
@click.argument("sweep_id")
@click.option("--trigger", default="", help="what started the sweep (default: rerun:<sweep>)")
@_space_options
def rerun(sweep_id: str, trigger: str, **opts: object) -> None:
    """Re-run SWEEP_ID's identical dataset snapshot with new hyperparameters."""
    with _trainer() as stub:
        source = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id), timeout=UNARY_TIMEOUT_S).sweep
    request = _request(
        opts,
        model_name=source.model_name,
        experiment=source.experiment,
        trigger=trigger or f"rerun:{sweep_id}",
        from_sweep=sweep_id,
        deployment=source.deployment,
    )
    _start(request, bool(opts["watch"]))


def _start(request: pb.StartSweepRequest, watch_it: bool) -> None:
    console = _console()
    with _trainer() as stub:
        sweep = stub.StartSweep(request, timeout=UNARY_TIMEOUT_S).sweep
    console.print(
        f"sweep [bold]{sweep.sweep_id}[/bold] {_state(sweep.state).lower()} "
        f"(model {sweep.model_name}, trigger {sweep.trigger})"
    )
    if watch_it:
        _watch(sweep.sweep_id, console)


@command.command("watch")
@click.argument("sweep_id")
def watch(sweep_id: str) -> None:
    """Follow SWEEP_ID live until it ends (past events first)."""
    _watch(sweep_id, _console())


def _watch(sweep_id: str, console: Console) -> None:
    lines: list[str] = []
    with _trainer() as stub:
        sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id), timeout=UNARY_TIMEOUT_S).sweep
        with Live(
            _view(sweep, lines),
            console=console,
            refresh_per_second=4,
            transient=not console.is_terminal,
        ) as live:
            for response in stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id)):
                lines.append(_event_line(response.event))
                sweep = stub.GetSweep(
                    pb.GetSweepRequest(sweep_id=sweep_id), timeout=UNARY_TIMEOUT_S
                ).sweep
                live.update(_view(sweep, lines))
            # The stream ends only once the sweep's final state is stored: read it as it
            # is now, not as it was at the last event.
            sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id),
                                  timeout=UNARY_TIMEOUT_S).sweep
            live.update(_view(sweep, lines))
    if not console.is_terminal:
        for line in lines:
            console.print(line, highlight=False)
    console.print(_outcome(sweep))
    if sweep.state != S.SWEEP_STATE_SUCCEEDED:
        raise SystemExit(1)


def _event_line(event: S.SweepEvent) -> str:
    when = event.time.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S")
    kind = S.SweepEventType.Name(event.type).removeprefix("SWEEP_EVENT_TYPE_").lower()
    return f"{when} {kind:<18} {event.message}"


def _view(sweep: S.Sweep, lines: list[str]) -> Group:
    state = _state(sweep.state)
    head = Text.assemble(
        ("sweep ", "bold"),
        (sweep.sweep_id, "bold"),
        "  ",
        (state, STATE_STYLE.get(state, "")),
        f"  model {sweep.model_name}  trigger {sweep.trigger}",
    )
    if sweep.warm_start_version:
        head.append(f"\nfine-tuning version {sweep.warm_start_version}")
    if sweep.dataset.content_hash:
        head.append(
            f"\nsnapshot {sweep.dataset.snapshot_id} ({sweep.dataset.observation_count} frames, "
            f"{sweep.dataset.train_count}/{sweep.dataset.validation_count}/"
            f"{sweep.dataset.holdout_count}, hash {sweep.dataset.content_hash[:12]})"
        )
    table = Table("trial", "state", "epochs", "best val MAE (mm)", "params", expand=False)
    for trial in sweep.trials:
        best = "*" if trial.trial_id == sweep.best_trial_id else ""
        params = " ".join(f"{k}={v}" for k, v in sorted(trial.params.items()))
        table.add_row(
            trial.trial_id + best,
            trial.state,
            str(trial.epochs_done),
            f"{trial.best_val_mae_mm:.1f}" if trial.epochs_done else "-",
            params,
        )
    return Group(head, table, Text("\n".join(lines[-6:]), style="dim"))


def _outcome(sweep: S.Sweep) -> str:
    state = _state(sweep.state)
    if sweep.state == S.SWEEP_STATE_SUCCEEDED:
        verdict = "promoted" if sweep.promoted else "not promoted"
        return (
            f"[green]SUCCEEDED[/green]: {sweep.model_name} version {sweep.model_version}, "
            "holdout MAE "
            f"{sweep.holdout_mae_mm:.1f} mm, {verdict} ({sweep.promotion_note})"
        )
    return f"[{STATE_STYLE.get(state, 'red')}]{state}[/]: {sweep.error or 'no error recorded'}"


@command.command("list")
@click.option("--model", default="", help="only this model's sweeps")
@click.option("--limit", type=int, default=20, show_default=True)
@output_option
def list_sweeps(model: str, limit: int, output: str) -> None:
    """List sweeps, newest first."""
    with _trainer() as stub:
        sweeps = stub.ListSweeps(
            pb.ListSweepsRequest(model_name=model, limit=limit), timeout=UNARY_TIMEOUT_S
        ).sweeps
    rows = [{"sweep": s.sweep_id, "model": s.model_name, "state": _state(s.state),
             "trigger": s.trigger, "created": timestamp(s.created_at), "trials": s.num_trials,
             "holdout_mae_mm": s.holdout_mae_mm if s.model_version else None,
             "version": s.model_version or None, "promoted": s.promoted,
             "deployment": s.deployment or None, "trace_id": s.trace_id or None}
            for s in sweeps]

    def state(value: str) -> str:
        return f"[{STATE_STYLE.get(value, 'red')}]{value}[/]"

    show_listings([Listing("sweeps", "sweeps",
                           ["sweep", "model", "state", "trigger", "created", "trials",
                            "holdout_mae_mm", "version", "promoted"], rows,
                           {"state": state, "created": short_time,
                            "holdout_mae_mm": lambda v: "-" if v is None else f"{v:.1f}"})],
                  output)


@command.command("cancel")
@click.argument("sweep_id")
def cancel(sweep_id: str) -> None:
    """Cancel SWEEP_ID (queued: at once; running: stops its Ray trials)."""
    with _trainer() as stub:
        sweep = stub.CancelSweep(
            pb.CancelSweepRequest(sweep_id=sweep_id), timeout=CANCEL_TIMEOUT_S
        ).sweep
    _console().print(f"sweep {sweep.sweep_id}: {_state(sweep.state)}")
