"""edgeloop's robot program: camera, range sensor, parking controller, stream client, simulator.

Public surface for other code (tests, benchmarks, ``edgeloop demo``):

- :func:`render_dataset`, :func:`simulate_captures`: labelled frames without a gateway;
- :func:`drive_session`, :func:`drive_session_async`: simulated runs through the stream client;
- :func:`get_scenario`, :func:`resolve_plan`, :class:`ScenarioPlan`: the simulated worlds;
- :class:`Mode`: what steers the car; :class:`SessionSummary`, :class:`RunSummary`.
"""

from edgeloop.edge_client.control.parking import Mode
from edgeloop.edge_client.scene.scenarios import (
    SCENARIOS,
    Scenario,
    ScenarioError,
    ScenarioPlan,
    get_scenario,
    resolve_plan,
)
from edgeloop.edge_client.simulate import (
    SampleFrame,
    drive_session,
    drive_session_async,
    render_dataset,
    simulate_captures,
)
from edgeloop.edge_client.stream.client import StreamClosed
from edgeloop.edge_client.summary import DeliverySummary, RunSummary, SessionSummary

__all__ = [
    "SCENARIOS",
    "DeliverySummary",
    "Mode",
    "RunSummary",
    "SampleFrame",
    "Scenario",
    "ScenarioError",
    "ScenarioPlan",
    "SessionSummary",
    "StreamClosed",
    "drive_session",
    "drive_session_async",
    "get_scenario",
    "render_dataset",
    "resolve_plan",
    "simulate_captures",
]
