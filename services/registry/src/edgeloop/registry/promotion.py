"""Aliases: the promotion gate, manual moves and roll-backs, each one recorded.

Every move goes to MLflow (the alias itself), to ``alias_moves`` (so a roll-back knows
where the alias was before) and to the history. Moves are serialised in-process so
two promotions cannot interleave between reading the champion and moving it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from edgeloop.contracts.registry.v1 import model_pb2
from edgeloop.platform.errors import FailedPrecondition
from edgeloop.platform.forgetting import allowed_mae_mm
from edgeloop.platform.worlds import CANDIDATE_MAE, CHAMPION_MAE, HOLDOUT_RUNS
from edgeloop.registry import history
from edgeloop.registry.mlflow_registry import ModelRegistry
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class World:
    """One world of the holdout, as the gate judges it."""

    candidate_mae_mm: float
    champion_mae_mm: float
    holdout_runs: int | None = None
    """Drive runs in the world's holdout (None: not recorded, judged as several)."""

    def allowed_mae_mm(self) -> float:
        """The candidate's largest MAE here that is not forgetting
        (``edgeloop.platform.forgetting``)."""
        return allowed_mae_mm(self.champion_mae_mm, self.holdout_runs)

    def evidence(self) -> str:
        """'k holdout run(s)' when recorded: the bounds the world was judged by widen as
        its runs get fewer (``edgeloop.platform.forgetting``)."""
        if self.holdout_runs is None:
            return ""
        return f"{self.holdout_runs} holdout run" + ("" if self.holdout_runs == 1 else "s")

    def describe(self) -> str:
        """'c/h mm', plus the world's holdout runs when recorded."""
        text = f"{self.candidate_mae_mm:.2f}/{self.champion_mae_mm:.2f} mm"
        return text + (f" ({evidence})" if (evidence := self.evidence()) else "")


def world_maes(metrics: dict[str, float]) -> dict[str, World]:
    """Per world: the candidate's and the champion's MAE from a version's metrics, where
    both exist, and the world's holdout runs when recorded (``edgeloop.platform.worlds``)."""
    found = {}
    for key, value in metrics.items():
        if key.startswith(CANDIDATE_MAE):
            world = key.removeprefix(CANDIDATE_MAE)
            champion = metrics.get(CHAMPION_MAE + world)
            runs = metrics.get(HOLDOUT_RUNS + world)
            if champion is not None:
                found[world] = World(float(value), float(champion),
                                     int(runs) if runs is not None else None)
    return found


def known_worlds(metrics: dict[str, float]) -> set[str] | None:
    """The worlds a version was judged on when it was registered: the worlds of its own
    snapshot, which it was trained on. None when its metrics name no world (registered
    before per-world metrics, or from outside the trainer)."""
    return {key.removeprefix(CANDIDATE_MAE) for key in metrics
            if key.startswith(CANDIDATE_MAE)} or None


def forgotten(worlds: dict[str, World], margin_mm: float,
              champion_knew: set[str] | None = None) -> list[str]:
    """The worlds on which the candidate is clearly worse than the champion
    (``edgeloop.platform.forgetting``: bounds graded by the world's holdout runs).

    Only worlds the champion knew (``champion_knew``; None: all of them) can be forgotten:
    on a world new to it the champion's MAE is luck, not knowledge (a head-on champion
    scores well on an angled world's one nearly head-on holdout run; registry README).
    """
    return [f"{name} ({w.candidate_mae_mm:.2f} vs {w.champion_mae_mm:.2f} mm"
            + (f", {evidence})" if (evidence := w.evidence()) else ")")
            for name, w in sorted(worlds.items())
            if (champion_knew is None or name in champion_knew)
            and w.candidate_mae_mm > w.allowed_mae_mm() + margin_mm]


def _new_to_champion(worlds: dict[str, World], champion_knew: set[str] | None) -> str:
    new = sorted(set(worlds) - champion_knew) if champion_knew is not None else []
    return ("; new to the champion, so not judged for forgetting: " + ", ".join(new)
            if new else "")


def _per_world(worlds: dict[str, World]) -> str:
    return "; per world (candidate/champion): " + ", ".join(
        f"{name} {w.describe()}" for name, w in sorted(worlds.items())) if worlds else ""


@dataclass(frozen=True)
class Decision:
    """The gate's answer."""

    promoted: bool
    reason: str


def decide(candidate: str, champion: str | None, evaluation: model_pb2.HoldoutEvaluation | None,
           margin_mm: float, force: bool,
           worlds: dict[str, World] | None = None,
           champion_knew: set[str] | None = None) -> Decision:
    """The promotion gate: beat the current champion on the same holdout by ``margin_mm``,
    and forget none of the worlds both were judged on that the champion knew (``worlds``:
    see :func:`world_maes`; ``champion_knew``: :func:`known_worlds` of the champion; a
    world whose holdout has few drive runs only by what run-to-run spread cannot explain).
    """
    if champion == candidate:
        return Decision(False, f"version {candidate} is the champion already")
    if force:
        return Decision(True, f"forced: version {candidate} promoted without the gate"
                              + (f" (champion was version {champion})" if champion else ""))
    if champion is None:
        return Decision(True, f"no champion yet: version {candidate} promoted")
    if evaluation is None or not evaluation.champion_version:
        return Decision(False, f"version {candidate} has no holdout evaluation against champion "
                               f"version {champion}; evaluate both on one holdout or force")
    if evaluation.champion_version != champion:
        return Decision(False, f"version {candidate} was evaluated against version "
                               f"{evaluation.champion_version}, but the champion is now version "
                               f"{champion}; re-evaluate or force")
    needed = evaluation.champion_mae_mm - margin_mm
    numbers = (f"candidate MAE {evaluation.candidate_mae_mm:.3f} mm vs champion version {champion} "
               f"MAE {evaluation.champion_mae_mm:.3f} mm on holdout "
               f"{evaluation.holdout_id or '(unnamed)'} with margin {margin_mm:.3f} mm")
    numbers += _per_world(worlds or {}) + _new_to_champion(worlds or {}, champion_knew)
    if evaluation.candidate_mae_mm + margin_mm >= evaluation.champion_mae_mm:
        return Decision(False, f"refused: {numbers} (needs MAE below {needed:.3f} mm)")
    lost = forgotten(worlds or {}, margin_mm, champion_knew)
    if lost:
        return Decision(False, f"refused: forgets {', '.join(lost)}: {numbers}")
    return Decision(True, f"passed: {numbers}")


class Aliases:
    """Moves aliases in MLflow and remembers every move."""

    def __init__(self, pool: AsyncConnectionPool, registry: ModelRegistry) -> None:
        self.pool = pool
        self.registry = registry
        self.lock = asyncio.Lock()

    async def current(self, model: str, alias: str) -> str | None:
        """The version ``alias`` points at now, if any."""
        aliases = await asyncio.to_thread(self.registry.aliases, model)
        version = aliases.get(alias)
        return str(version) if version is not None else None

    async def move(self, actor: str, model: str, alias: str, version: str, action: str,
                   detail: dict) -> str | None:
        """Point ``alias`` at ``version``; return where it pointed before. Caller holds ``lock``."""
        previous = await self.current(model, alias)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO alias_moves (model_name, alias, version, previous_version, action) "
                "VALUES (%s, %s, %s, %s, %s)", (model, alias, version, previous, action))
            await history.record(conn, actor, f"model/{model}", action,
                                 {"alias": alias, "version": version, "previous_version": previous,
                                  **detail})
            # Last inside the transaction: if MLflow refuses, the records roll back with it.
            await asyncio.to_thread(self.registry.set_alias, model, alias, version)
        return previous

    async def rollback(self, actor: str, model: str, alias: str) -> tuple[str, str]:
        """Move ``alias`` back to the version it pointed at before; return (restored, from)."""
        async with self.lock:
            current = await self.current(model, alias)
            if current is None:
                raise FailedPrecondition(f"alias: model {model!r} has no alias {alias!r}")
            async with self.pool.connection() as conn:
                move = await _last_move(conn, model, alias)
                if move is None or move["version"] != current:
                    raise FailedPrecondition(
                        f"alias: no recorded move of {alias!r} to version {current} to undo "
                        "(it was set outside the registry, or rolled back to its first version)")
                if move["previous_version"] is None:
                    raise FailedPrecondition(f"alias: {alias!r} pointed at no version before "
                                             f"version {current}; nothing to roll back to")
                restored = move["previous_version"]
                await conn.execute("UPDATE alias_moves SET rolled_back = true WHERE move_id = %s",
                                   (move["move_id"],))
                await history.record(conn, actor, f"model/{model}", "rollback",
                                     {"alias": alias, "version": restored,
                                      "rolled_back_from": current})
                await asyncio.to_thread(self.registry.set_alias, model, alias, restored)
            return restored, current


async def _last_move(conn: AsyncConnection, model: str, alias: str) -> dict | None:
    cursor = await conn.execute(
        "SELECT move_id, version, previous_version FROM alias_moves WHERE model_name = %s "
        "AND alias = %s AND NOT rolled_back ORDER BY move_id DESC LIMIT 1", (model, alias))
    return await cursor.fetchone()
