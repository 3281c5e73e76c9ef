"""Test helpers shared by edgeloop's members (a pytest plugin, loaded automatically).

Fixtures: ``pg_cluster`` (one private PostgreSQL cluster per test session) and
``database_url`` (a fresh database per test), ``ray_nodes`` (one Ray head node process per
session; :class:`RayNodes` for more nodes). Helpers: :func:`free_port`,
:class:`ServiceProcess` (a service started with ``python -m`` and waited for).
"""

from edgeloop.testing.ports import free_port
from edgeloop.testing.processes import ServiceProcess, wait_serving
from edgeloop.testing.raynodes import RayNodes, driver

__all__ = ["RayNodes", "ServiceProcess", "driver", "free_port", "wait_serving"]
