"""`edgeloop up`: start the local stack on embedded defaults."""

from __future__ import annotations

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack import local
from edgeloop.compose.stack.processes import PortTaken
from edgeloop.compose.stack.topology import Topology
from edgeloop.compose.views import print_status
from edgeloop.platform.errors import ConfigError


@click.command("up")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def command(timeout: float) -> None:
    """Start PostgreSQL, MLflow, the four services and the web console in the state folder.

    Parts already running are left alone. Logs go to <state>/logs/<part>.log. Ports move
    with EDGELOOP_<PART>_PORT (POSTGRES, MLFLOW, REGISTRY, FEATURES, TRAINER, GATEWAY,
    WEBHOOK, RAY_DASHBOARD, CONSOLE); the state folder with EDGELOOP_STATE_DIR.

    A service's own setting goes to it as EDGELOOP_<PART>__<SETTING> (PART: REGISTRY,
    FEATURES, TRAINER, GATEWAY, CONSOLE), e.g. EDGELOOP_TRAINER__CARRIED_TRAIN_FRAMES=400
    gives the trainer EDGELOOP_CARRIED_TRAIN_FRAMES=400; each part's README lists its
    settings. Parts already running keep theirs (down, then up).
    """
    try:
        topology = Topology.from_env(state_dir())
        rows = local.up(topology, lambda line: click.echo(f"  {line}"), timeout)
    except (PortTaken, ConfigError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    print_status(rows, topology)
    unhealthy = [row.name for row in rows if row.status != "SERVING"]
    if unhealthy:
        raise click.ClickException(f"not healthy: {', '.join(unhealthy)}; see the logs above")
