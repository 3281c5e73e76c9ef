"""Ingest batch spans link to the frames' traces (from each observation's traceparent)."""

from __future__ import annotations

import pytest
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.tracing import MAX_LINKS, frame_links

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _obs(traceparent: str, index: int = 0) -> observation_pb2.Observation:
    return observation_pb2.Observation(observation_id=f"id-{index}", traceparent=traceparent)


def test_links_carry_the_frames_trace_and_span():
    (link,) = frame_links([_obs(f"00-{TRACE}-{SPAN}-01")])
    assert format(link.context.trace_id, "032x") == TRACE
    assert format(link.context.span_id, "016x") == SPAN
    assert link.attributes == {"observation_id": "id-0"}


def test_missing_or_malformed_traceparents_are_skipped():
    links = frame_links([_obs(""), _obs("garbage"), _obs(f"00-{'0' * 32}-{SPAN}-01"),
                         _obs(f"00-{TRACE}-{SPAN}-01", 3)])
    assert [link.attributes["observation_id"] for link in links] == ["id-3"]


def test_links_are_capped():
    many = [_obs(f"00-{TRACE}-{i + 1:016x}-01", i) for i in range(MAX_LINKS + 50)]
    assert len(frame_links(many)) == MAX_LINKS
