"""Session fixtures that free what they hold once the last module using them has run.

A session fixture lives until the session ends. For a Ray cluster that is expensive: an
idle head node holds ~900 MB and ~5 % of a core, and on a 2-core machine it would sit
beside every later directory's stacks. A fixture that calls :func:`release_after_last_user`
is stopped after the teardown of the last module (in collection order) holding a test that
uses it, directly or through another fixture, so module fixtures built on it are torn down
before it. Its own teardown at the session's end still runs, so ``stop`` must be safe to
call twice. Only fixtures that tests name (not ``request.getfixturevalue``) count as used.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import pytest

_stops: dict[str, Callable[[], None]] = {}
_release_after: dict[str, str] = {}
"""Fixture name → node id of the test after whose teardown it is released."""


def release_after_last_user(request: pytest.FixtureRequest, stop: Callable[[], None]) -> None:
    """Call ``stop`` once the last module that uses the requesting fixture has run."""
    _stops[request.fixturename] = stop


def release_points(items: list[pytest.Item]) -> dict[str, str]:
    """For each fixture any of ``items`` uses: the node id of the last item of the module
    that holds its last user."""
    last_user: dict[str, int] = {}
    for index, item in enumerate(items):
        for name in getattr(item, "fixturenames", ()):
            last_user[name] = index
    points = {}
    for name, index in last_user.items():
        end = index
        while end + 1 < len(items) and items[end + 1].path == items[index].path:
            end += 1
        points[name] = items[end].nodeid
    return points


def pytest_collection_finish(session: pytest.Session) -> None:
    _release_after.clear()
    _release_after.update(release_points(session.items))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        for name in [n for n in _stops if _release_after.get(n) == item.nodeid]:
            _stops.pop(name)()
