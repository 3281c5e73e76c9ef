"""`edgeloop up` tells the operator when the parts will compile their libraries at each start."""

from __future__ import annotations

import py_compile
import sys
from pathlib import Path

import pytest
from edgeloop.compose.stack import bytecode


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package ``elheavy`` with no bytecode yet."""
    folder = tmp_path / "elheavy"
    folder.mkdir()
    (folder / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return folder / "__init__.py"


def test_a_package_without_bytecode_is_named_until_it_is_compiled(package: Path) -> None:
    assert bytecode.uncompiled(["elheavy", "no_such_module_here", "sys"]) == ["elheavy"]
    py_compile.compile(str(package))
    assert bytecode.uncompiled(["elheavy"]) == []


def test_advice_only_where_python_will_not_write_the_cache(package: Path) -> None:
    advice = bytecode.advice(["elheavy"], writes_bytecode=False)
    assert advice is not None
    assert "elheavy" in advice and "uv sync --frozen --compile-bytecode" in advice
    assert bytecode.advice(["elheavy"], writes_bytecode=True) is None
    py_compile.compile(str(package))
    assert bytecode.advice(["elheavy"], writes_bytecode=False) is None


def test_the_default_follows_this_interpreter(package: Path) -> None:
    expected = None if not sys.flags.dont_write_bytecode else bytecode.advice(
        ["elheavy"], writes_bytecode=False)
    assert bytecode.advice(["elheavy"]) == expected
