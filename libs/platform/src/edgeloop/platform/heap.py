"""Keep Python's full garbage collections short in long-running services.

A service that has imported TensorFlow holds ~300,000 objects that live as long as the
process. Python's cyclic collector walks all of them in every full (generation 2)
collection: 70-100 ms on an idle core and a quarter second or more under load, every few
seconds at a fleet's frame rate, with every Python thread stopped. In the gateway that set
the p99 of a frame's answer (bench/README, "Full collections"). :func:`freeze_heap` moves
what exists once a service has started (modules, TensorFlow, loaded models) into the
permanent generation, which collections skip (``gc.freeze``), so they walk only what came
since.

Frozen objects are still freed by reference counting; only cycles among them are never
collected. So a process that froze its heap freezes a loaded model too
(:func:`freeze_new_objects`), and after it dropped one (a version released, a TensorFlow
module replaced by LiteRT) it collects everything once and freezes again
(:func:`refreeze_heap`). Both do nothing in a process that did not freeze at start (tests,
tools), where a full collection per model load would only cost time.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

_frozen = False


def freeze_heap(reason: str) -> None:
    """Collect what is unfrozen, then exclude every object alive now from collections;
    from now on this process keeps its heap frozen across model changes."""
    global _frozen
    _frozen = True
    began = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("heap frozen", extra={"reason": reason, "frozen_objects": gc.get_freeze_count(),
                                   "collect_ms": round((time.perf_counter() - began) * 1000, 1)})


def heap_frozen() -> bool:
    """Whether this process froze its heap (:func:`freeze_heap`)."""
    return _frozen


def freeze_new_objects(reason: str) -> None:
    """After something long-lived was loaded: freeze it too (collects only what is
    unfrozen, which is cheap). Nothing if the heap was never frozen."""
    if _frozen:
        freeze_heap(reason)


def refreeze_heap(reason: str) -> None:
    """After something large was dropped: give every frozen object back to the collector,
    collect all (one full collection, so its cycles are freed), freeze again. Nothing if
    the heap was never frozen."""
    if _frozen:
        gc.unfreeze()
        freeze_heap(reason)


def thaw_heap() -> None:
    """Undo :func:`freeze_heap` (tests)."""
    global _frozen
    _frozen = False
    gc.unfreeze()
