"""The frozen heap: full collections skip what a service holds for its whole life, and a
dropped model's cycles are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from edgeloop.platform.heap import (
    freeze_heap,
    freeze_new_objects,
    heap_frozen,
    refreeze_heap,
    thaw_heap,
)


class Node:
    """A weak-referenceable object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref:
    """Two objects referring to each other, nothing else to them: only the collector
    frees them. Returns a weak reference to one."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def thawed() -> Iterator[None]:
    thaw_heap()
    yield
    thaw_heap()


def test_a_frozen_cycle_survives_collections_until_the_heap_is_refrozen(thawed) -> None:
    held = cycle()
    model = held()  # alive when the heap is frozen, like a loaded model
    freeze_heap("test")
    assert heap_frozen() and gc.get_freeze_count() > 0
    del model  # the model is dropped: its cycle is garbage now, but frozen
    gc.collect()
    assert held() is not None, "frozen objects are skipped by full collections"
    refreeze_heap("model released")
    assert held() is None, "a refreeze collects everything once"
    assert gc.get_freeze_count() > 0


def test_objects_made_after_the_freeze_are_collected_and_frozen_when_asked(thawed) -> None:
    freeze_heap("test")
    frozen_before = gc.get_freeze_count()
    later = cycle()
    gc.collect()
    assert later() is None, "what came after the freeze is still collected"
    kept = [Node() for _ in range(1000)]
    freeze_new_objects("model loaded")
    assert gc.get_freeze_count() >= frozen_before + len(kept)


def test_a_process_that_never_froze_its_heap_is_left_alone(thawed) -> None:
    held = cycle()
    freeze_new_objects("model loaded")
    refreeze_heap("model released")
    assert not heap_frozen() and gc.get_freeze_count() == 0
    gc.collect()
    assert held() is None
