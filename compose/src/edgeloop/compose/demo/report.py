"""The demo's output: the thesis-style table (rich), report.md and PNG plots.

Everything here works from a :class:`DemoResult`, so a report can be regenerated from
the saved ``result.json`` without the stack.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from edgeloop.compose.demo.distances import BIN_MM, by_bin, phase_distances  # noqa: E402
from edgeloop.compose.demo.metrics import ErrorStats  # noqa: E402
from edgeloop.compose.demo.results import DemoResult, LoopResult, PhaseResult  # noqa: E402
from rich.table import Table  # noqa: E402

THESIS_MAE = {1: ("-", "6.85"), 2: ("19", "4.83"), 3: ("178", "15.5"), 4: ("30.0", "12.9"),
              5: ("45.5", "6.17")}
"""The thesis's mean errors (mm) before and after retraining, per phase."""
COLUMNS = ("phase", "scenario", "MAE before", "max before", "MAE after", "max after",
           "MAE settled", "thesis MAE", "first rule (kind)", "detection", "onset -> serving",
           "retraining", "versions", "false alarms", "note")


def _mm(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _short(note: str, limit: int) -> str:
    """The note's first clause, at most ``limit`` characters (the full text is in report.md)."""
    head = note.split(" on holdout")[0]
    return head if len(head) <= limit else head[: limit - 1] + "…"


def rows(result: DemoResult, note_limit: int = 10_000) -> list[list[str]]:
    """The table's rows, one per phase (shared by the console table and report.md)."""
    found = []
    for phase in result.phases:
        before, after = phase.before or ErrorStats(0, None, None, None), \
            phase.after or ErrorStats(0, None, None, None)
        thesis = THESIS_MAE.get(phase.number, ("-", "-"))
        versions = f"v{phase.version_before} -> v{phase.version_after}" if phase.version_before \
            else f"v{phase.version_after}" if phase.version_after else "-"
        if phase.version_settled:
            versions += f" -> v{phase.version_settled}"
            if phase.settled_trigger:
                versions += f" ({phase.settled_trigger.split(':')[0]})"
        settled = (f"{phase.settled.mae_mm:.1f} ({_seconds(phase.onset_to_settled_s)})"
                   if phase.settled and phase.settled.mae_mm is not None else "-")
        watched = phase.monitored or phase.number == 5
        detection = _seconds(phase.detection_s) if watched else \
            ("-" if phase.number == 1 else "manual")
        rule = f"{phase.rule} ({phase.rule_kind})" if phase.rule else "-"
        alarms = str(len(phase.false_alarms)) if watched else "-"
        found.append([f"{phase.number} {phase.title}", phase.scenario, _mm(before.mae_mm),
                      _mm(before.max_mm), _mm(after.mae_mm), _mm(after.max_mm), settled,
                      f"{thesis[0]} -> {thesis[1]}", rule, detection,
                      _seconds(phase.onset_to_serving_s) if watched else "-",
                      _seconds(phase.retrain_s), versions, alarms,
                      _short(phase.note, note_limit) if phase.note else ""])
    return found


def console_table(result: DemoResult) -> Table:
    """The thesis-style table for the terminal."""
    table = Table(title=f"edgeloop demo ({result.mode}): errors in mm, model {result.model_name}")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows(result, note_limit=60):
        table.add_row(*row)
    return table


def _markdown_table(header: tuple[str, ...], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]
    return lines


def markdown(result: DemoResult, plots: list[str]) -> str:
    """report.md: the table, the loop's timings, the targets and the plots."""
    lines = [f"# edgeloop demo report ({result.mode})", "",
             f"Started {result.started_at}; model `{result.model_name}`, deployment "
             f"`{result.deployment}`." + ("" if result.finished else
                                          f" **Did not finish:** {result.failure}"), "",
             "Errors are |prediction - ToF sensor| in mm over the labelled frames each model "
             "version answered. 'before' is the champion in the new world, 'after' the "
             "retrained version on fresh runs; a monitored phase's 'before' is the old "
             "version in the new world until the switch, 'MAE settled' the next version that "
             "served the new world (the monitor's consolidation once the world had 3x the "
             "data, or a further drift retrain; the time is from the change to its first "
             "answer). Monitored phases (all drifted phases "
             "by default; phase 5 always) run with no human step: the drift monitor detects, "
             "retrains, the gate promotes, the gateway switches. With --manual, phases 2-4 "
             "retrain by hand as the thesis did.", ""]
    lines += _markdown_table(COLUMNS, rows(result))
    loops = result.loops or ([result.loop] if result.loop is not None else [])
    for loop in loops:
        lines += _loop_lines(result, loop)
    lines += ["", "## Targets", ""] + [f"- {t.describe()}" for t in result.targets()]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _loop_lines(result: DemoResult, loop: LoopResult) -> list[str]:
    phase = next((p for p in result.phases if p.number == loop.phase), None)
    pre = loop.pre_drift.describe() if loop.pre_drift else "n/a"
    title = TITLES_MD.get(loop.phase, "monitored")
    lines = ["", f"## Phase {loop.phase}: {title}", "",
             f"- pre-drift (live, v{phase.version_before if phase else '?'}): {pre}",
             f"- world change at {_seconds(loop.red_at_s)} into the phase",
             f"- first drift event: rule `{loop.rule or '-'}` ({loop.kind or '-'}) after "
             f"{_seconds(loop.detection_s)}",
             f"- retraining (event -> version promoted): {_seconds(loop.retrain_s)}",
             f"- promotion -> first prediction of the new version: {_seconds(loop.switch_s)}",
             f"- world change -> new version serving: {_seconds(loop.onset_to_serving_s)}",
             f"- drift events before the change (false alarms): "
             f"{', '.join(loop.false_alarms) or 'none'}"]
    if phase is not None and phase.version_settled and phase.settled is not None:
        lines.append(f"- settled: version {phase.version_settled} (trigger "
                     f"`{phase.settled_trigger or '?'}`) served the new world "
                     f"{_seconds(phase.onset_to_settled_s)} after the change: "
                     f"{phase.settled.describe()}")
    lines.append("")
    if phase is not None:
        lines += _distance_lines(loop, phase)
    if loop.events:
        header = ("rule", "kind", "fired (s)", "value", "threshold", "version", "sweep", "note")
        body = [[e["rule"], e["kind"], _mm(e["fired_at_s"]), f"{e['value'] or 0:.3g}",
                 e["threshold"], e["model_version"], e["sweep_id"], e["note"]]
                for e in loop.events]
        lines += ["Drift events of the phase:", ""] + _markdown_table(header, body)
    return lines


def _distance_lines(loop: LoopResult, phase: PhaseResult) -> list[str]:
    """The phase's errors per distance bin: pre-drift, right after the retrain, settled."""
    distances = phase_distances(loop, phase)
    columns = [(f"pre-drift v{phase.version_before}", distances.pre_drift),
               (f"after v{phase.version_after}", distances.after),
               (f"settled v{phase.version_settled}", distances.settled)]
    columns = [(name, by_bin(frames)) for name, frames in columns if frames]
    if not columns:
        return []
    edges = sorted({low for _, bins in columns for low in bins})
    body = [[f"{low:.0f}-{low + BIN_MM:.0f}"]
            + [_bin_cell(bins.get(low)) for _, bins in columns] for low in edges]
    header = ("ToF distance (mm)", *(name for name, _ in columns))
    return (["Error by distance (MAE mm, frames): a far wall is harder for every model, so a "
             "wider range raises a phase's MAE by itself.", ""]
            + _markdown_table(header, body) + [""])


def _bin_cell(stats: ErrorStats | None) -> str:
    if stats is None or stats.mae_mm is None:
        return "-"
    return f"{stats.mae_mm:.1f} ({stats.count})"


TITLES_MD = {2: "label shift, monitored", 3: "covariate shift, monitored",
             4: "concept drift, monitored", 5: "the closed loop (red floor)"}


def histogram(phase: PhaseResult, path: Path) -> None:
    """Absolute error before and after retraining, one phase."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = [(phase.errors_before, f"before (v{phase.version_before})"),
            (phase.errors_after, f"after (v{phase.version_after})")]
    values = [abs(e) for errors, _ in data for e in errors]
    top = max(values) if values else 1.0
    bins = [top * i / 30 for i in range(31)]
    for errors, label in data:
        if errors:
            ax.hist([abs(e) for e in errors], bins=bins, alpha=0.6,
                    label=f"{label}, n={len(errors)}")
    ax.set_xlabel("|prediction - sensor| (mm)")
    ax.set_ylabel("frames")
    ax.set_title(f"phase {phase.number}: {phase.title} ({phase.scenario})")
    if values:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rolling(times: list[float], values: list[float], window_s: float) -> list[float]:
    """Trailing mean over ``window_s`` seconds at every point (times ascending)."""
    out, start, total = [], 0, 0.0
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        total += v
        while times[start] < t - window_s:
            total -= values[start]
            start += 1
        out.append(total / (i - start + 1))
    return out


def timeline(loop: LoopResult, path: Path) -> None:
    """A monitored phase: 5- and 1-minute mean saturation, prediction and error over time."""
    points = sorted(loop.timeline, key=lambda p: p.t_s)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    times = [p.t_s / 60 for p in points]
    seconds = [p.t_s for p in points]
    sat = [p.saturation for p in points]
    axes[0].plot(times, sat, ",", color="grey", label="frame")
    if points:
        axes[0].plot(times, _rolling(seconds, sat, 60), label="1-min mean")
        axes[0].plot(times, _rolling(seconds, sat, 300), label="5-min mean")
    axes[0].axhspan(40, 60, color="green", alpha=0.08, label="band [40, 60]")
    axes[0].set_ylabel("saturation (0-100)")
    labelled = [p for p in points if p.prediction_mm is not None]
    axes[1].plot([p.t_s / 60 for p in labelled], [p.prediction_mm for p in labelled], ".",
                 markersize=2, label="prediction")
    sensed = [p for p in points if p.sensor_mm is not None]
    axes[1].plot([p.t_s / 60 for p in sensed], [p.sensor_mm for p in sensed], ".",
                 markersize=2, alpha=0.4, label="ToF sensor")
    axes[1].set_ylabel("distance (mm)")
    errs = [p for p in points if p.error_mm is not None]
    err_t = [p.t_s for p in errs]
    err_v = [abs(p.error_mm or 0.0) for p in errs]
    axes[2].plot([t / 60 for t in err_t], err_v, ".", markersize=2, color="grey", label="frame")
    if errs:
        axes[2].plot([t / 60 for t in err_t], _rolling(err_t, err_v, 60), label="1-min MAE")
    axes[2].set_ylabel("|error| (mm)")
    axes[2].set_xlabel(f"minutes since phase {loop.phase} started")
    marks = [(loop.red_at_s, "world changes", "red"), (loop.fired_at_s, "drift event", "orange"),
             (loop.promoted_at_s, "promoted", "purple"), (loop.serving_at_s, "new version serves",
                                                          "blue")]
    for ax in axes:
        for at, label, colour in marks:
            if at is not None:
                ax.axvline(at / 60, color=colour, linestyle="--", linewidth=1, label=label)
    for ax in axes:
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"phase {loop.phase}: {TITLES_MD.get(loop.phase, 'monitored')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: DemoResult, folder: Path) -> Path:
    """report.md, result.json and the plots in ``folder``; returns report.md's path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = []
    for phase in result.phases:
        if phase.errors_before or phase.errors_after:
            name = f"phase{phase.number}_errors.png"
            histogram(phase, folder / name)
            plots.append(name)
    for loop in result.loops or ([result.loop] if result.loop is not None else []):
        if loop.timeline:
            name = f"phase{loop.phase}_timeline.png"
            timeline(loop, folder / name)
            plots.append(name)
    result.save(folder / "result.json")
    path = folder / "report.md"
    path.write_text(markdown(result, plots))
    return path
