"""Test helpers shared by edgeloop's members (a pytest plugin, loaded automatically).

Fixtures: ``pg_cluster`` (one private PostgreSQL cluster per test session),
``database_url`` (a fresh database per test) and ``tls_files`` (a local CA and
certificates, :class:`edgeloop.testing.tls.TLSFiles`). Helpers: :func:`free_port`,
:class:`ServiceProcess` (a service started with ``python -m`` and waited for).
"""

from edgeloop.testing.ports import free_port
from edgeloop.testing.processes import ServiceProcess, wait_serving

__all__ = ["ServiceProcess", "free_port", "wait_serving"]
