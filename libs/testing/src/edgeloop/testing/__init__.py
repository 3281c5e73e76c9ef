"""Test helpers shared by edgeloop's members (a pytest plugin, loaded automatically).

Fixtures: ``pg_cluster`` (one private PostgreSQL cluster per test session, with
TimescaleDB preloaded when it is installed), ``pg_cluster_plain`` /
``pg_cluster_timescaledb`` (one per features-schema branch), ``database_url`` (a fresh
database per test) and ``db_branch`` (its branch), ``ray_nodes`` (one Ray head node
process, shared until the last module that uses it has run; :class:`RayNodes` for more
nodes, :mod:`edgeloop.testing.release` for the early stop), ``tls_files`` (a local CA and
certificates, :class:`edgeloop.testing.tls.TLSFiles`); the ``db_branches`` marker runs a
test on both branches (see :mod:`edgeloop.testing.fixtures`). Helpers:
:class:`OtlpReceiver` (an in-memory OTLP/gRPC trace collector), :func:`free_port`,
:class:`ManualClock` (a clock the test moves by hand),
:class:`ServiceProcess` (a service started with ``python -m`` and waited for),
:func:`moto_s3` (an S3 server on loopback), :func:`modules_imported` (what code imports,
in a fresh interpreter).
"""

from edgeloop.testing.clock import ManualClock
from edgeloop.testing.imports import modules_imported
from edgeloop.testing.otlp import OtlpReceiver, ReceivedSpan
from edgeloop.testing.ports import free_port
from edgeloop.testing.processes import ServiceProcess, help_of, run_entry_point, wait_serving
from edgeloop.testing.raynodes import RayNodes, driver
from edgeloop.testing.s3 import moto_s3
from edgeloop.testing.stack_state import discard_stack_leftovers

__all__ = ["ManualClock", "OtlpReceiver", "RayNodes", "ReceivedSpan", "ServiceProcess",
           "discard_stack_leftovers", "driver", "free_port", "help_of", "modules_imported",
           "moto_s3", "run_entry_point", "wait_serving"]
