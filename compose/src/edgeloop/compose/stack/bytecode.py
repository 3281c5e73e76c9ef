"""Whether the heavy libraries have compiled bytecode: without it every part starts slower.

Where ``PYTHONDONTWRITEBYTECODE`` is set (CI machines, many container images), Python never
caches what it compiles. In an environment synced without ``uv sync --compile-bytecode``
every part of the stack then compiles TensorFlow, Ray and MLflow from source each time it
starts: ``import tensorflow, ray, mlflow`` takes 19 s instead of 7 s on a 2-core machine,
and ``edgeloop up`` (fresh state folder) 71 s instead of 27 s. ``edgeloop up`` says so
instead of just being slow.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable

HEAVY = ("tensorflow", "ray", "mlflow")


def uncompiled(modules: Iterable[str] = HEAVY) -> list[str]:
    """The installed modules among ``modules`` whose entry file has no cached bytecode."""
    missing = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        if not os.path.exists(importlib.util.cache_from_source(spec.origin)):
            missing.append(name)
    return missing


def advice(modules: Iterable[str] = HEAVY, writes_bytecode: bool | None = None) -> str | None:
    """A line for the operator when the parts will compile ``modules`` at every start."""
    if writes_bytecode is None:
        writes_bytecode = not sys.flags.dont_write_bytecode
    if writes_bytecode:
        return None  # the first start writes the cache, later ones use it
    missing = uncompiled(modules)
    if not missing:
        return None
    return (f"note: {', '.join(missing)} have no compiled bytecode and PYTHONDONTWRITEBYTECODE "
            "is set, so every part compiles them at each start (about 2-3x slower); "
            "run `uv sync --frozen --compile-bytecode` once to fix it")
