"""Session fixtures released after the last module that uses them (edgeloop.testing.release)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from edgeloop.testing.release import release_points


@dataclass
class _Item:
    nodeid: str
    path: Path
    fixturenames: tuple[str, ...]


def _items(*specs: tuple[str, str, tuple[str, ...]]) -> list[_Item]:
    return [_Item(f"{module}::{name}", Path(module), names) for module, name, names in specs]


def test_the_release_point_is_the_last_item_of_the_last_users_module() -> None:
    items = _items(("a.py", "t1", ("ray",)), ("b.py", "t1", ("ray", "db")),
                   ("b.py", "t2", ("db",)), ("b.py", "t3", ()), ("c.py", "t1", ("db",)))
    assert release_points(items) == {"ray": "b.py::t3", "db": "c.py::t1"}


def test_a_fixture_no_test_uses_has_no_release_point() -> None:
    assert release_points(_items(("a.py", "t1", ("db",)))) == {"db": "a.py::t1"}
    assert release_points([]) == {}


CONFTEST = """
    from pathlib import Path

    import pytest
    from edgeloop.testing.release import release_after_last_user

    def event(what):
        with (Path(__file__).parent / "events.txt").open("a") as events:
            events.write(what + "\\n")

    @pytest.fixture(scope="session")
    def held(request):
        release_after_last_user(request, lambda: event("stopped"))
        yield "held"
        event("session end")

    @pytest.fixture(scope="module")
    def built_on_it(held):
        yield held
        event("module fixture torn down")
"""
FIRST = """
    from conftest import event

    def test_uses_it(built_on_it):
        event("first used it")

    def test_after_it_in_the_same_module():
        event("same module")
"""
SECOND = """
    from conftest import event

    def test_later():
        event("later module")
"""


def test_a_real_session_stops_the_fixture_after_its_last_module(tmp_path: Path) -> None:
    for name, source in (("conftest.py", CONFTEST), ("test_a_first.py", FIRST),
                         ("test_b_second.py", SECOND)):
        (tmp_path / name).write_text(textwrap.dedent(source))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "no:hypothesispytest", "-s", "--import-mode=prepend", "--rootdir", str(tmp_path),
         "-c", "/dev/null", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "events.txt").read_text().splitlines() == [
        "first used it", "same module", "module fixture torn down", "stopped", "later module",
        "session end"]
