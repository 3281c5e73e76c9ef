"""Span export: OTLP endpoint from either variable, and span files that stay bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from edgeloop.platform import ServiceSettings, load_settings
from edgeloop.platform.telemetry import (
    FileSpanExporter,
    Rotation,
    resolve_otlp_endpoint,
    rotated_path,
)
from edgeloop.testing import ManualClock
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


def _tracer(path: Path, rotation: Rotation):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path, rotation)))
    return provider.get_tracer("test")


def _names(path: Path) -> list[str]:
    return [json.loads(line)["name"] for line in path.read_text().splitlines()]


def test_otlp_endpoint_falls_back_to_the_standard_variable(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert resolve_otlp_endpoint("") == ""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")
    assert resolve_otlp_endpoint("") == "http://jaeger:4317"
    assert resolve_otlp_endpoint("collector:4317") == "collector:4317"  # ours wins


def test_rotation_settings_come_from_edgeloop_variables(monkeypatch):
    monkeypatch.setenv("EDGELOOP_TRACE_FILE_MAX_BYTES", "1000")
    monkeypatch.setenv("EDGELOOP_TRACE_FILE_MAX_AGE_S", "60")
    monkeypatch.setenv("EDGELOOP_TRACE_FILE_BACKUPS", "2")
    settings = load_settings(ServiceSettings)
    assert (settings.trace_file_max_bytes, settings.trace_file_max_age_s,
            settings.trace_file_backups) == (1000, 60.0, 2)
    assert Rotation.from_env() == Rotation(1000, 60.0, 2)


def test_files_rotate_by_size_and_keep_a_bounded_number(tmp_path: Path):
    path = tmp_path / "gateway.jsonl"
    tracer = _tracer(path, Rotation(max_bytes=2_000, max_age_s=0, backups=2))
    for n in range(60):
        with tracer.start_as_current_span(f"span-{n}"):
            pass
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gateway.1.jsonl", "gateway.2.jsonl", "gateway.jsonl"]
    line = max(len(x) for p in tmp_path.iterdir() for x in p.read_text().splitlines()) + 1
    for file in tmp_path.iterdir():
        assert file.stat().st_size < 2_000 + line  # rotated once past the limit
    # the newest spans are kept, in order across the files (oldest file first)
    kept = _names(rotated_path(path, 2)) + _names(rotated_path(path, 1)) + _names(path)
    assert kept[-1] == "span-59"
    assert kept == [f"span-{n}" for n in range(60 - len(kept), 60)]


def test_files_rotate_by_age_of_their_first_span(tmp_path: Path):
    path = tmp_path / "features.jsonl"
    tracer = _tracer(path, Rotation(max_bytes=0, max_age_s=3_600, backups=3))
    two_hours_ago = time.time_ns() - 7_200 * 10**9
    tracer.start_span("old", start_time=two_hours_ago).end(end_time=two_hours_ago + 10**6)
    assert _names(path) == ["old"]
    with tracer.start_as_current_span("new"):
        pass
    assert _names(rotated_path(path, 1)) == ["old"] and _names(path) == ["new"]
    with tracer.start_as_current_span("newer"):
        pass
    assert _names(path) == ["new", "newer"]  # the current file is young: no rotation


def test_writers_of_one_file_follow_a_rotation_by_another(tmp_path: Path):
    """The trainer and its Ray workers share one file: a writer whose file was rotated
    away writes to the new file, never to the renamed one."""
    path = tmp_path / "trainer.jsonl"
    rotation = Rotation(max_bytes=1_500, max_age_s=0, backups=50)
    first, second = _tracer(path, rotation), _tracer(path, rotation)
    for n in range(40):
        with (first if n % 2 else second).start_as_current_span(f"span-{n}"):
            pass
    files = [path] + [rotated_path(path, n) for n in range(1, 51) if rotated_path(path, n).exists()]
    names = [name for file in reversed(files) for name in _names(file)]
    assert names == [f"span-{n}" for n in range(40)]
    assert len(files) > 2


@pytest.mark.parametrize("backups", [0])
def test_no_backups_drops_the_full_file(tmp_path: Path, backups: int):
    path = tmp_path / "registry.jsonl"
    tracer = _tracer(path, Rotation(max_bytes=300, max_age_s=0, backups=backups))
    for n in range(10):
        with tracer.start_as_current_span(f"span-{n}"):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["registry.jsonl"]
    assert _names(path)[-1] == "span-9"


def test_the_standard_sampler_variables_choose_which_frames_are_traced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.platform.telemetry import tracer_provider

    every = tracer_provider("sampling-test").get_tracer("t")
    assert every.start_span("frame").is_recording()  # the default: every frame is traced
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sampled = tracer_provider("sampling-test").get_tracer("t")
    kept = sum(sampled.start_span("frame").is_recording() for _ in range(4000))
    assert 800 < kept < 1200  # a quarter, decided per trace id


def test_span_lines_are_the_documents_to_json_makes() -> None:
    from edgeloop.platform.telemetry import SpanLineEncoder, tracer_provider
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    class Keep(SpanExporter):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []

        def export(self, spans):  # noqa: ANN001, ANN201
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    kept = Keep()
    provider = tracer_provider("encoder-test")
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("frame", attributes={"seq": 7, "ok": True}) as root:
        root.add_event("batched", {"size": 8, "waits": (1.5, 2.0)})
        with tracer.start_as_current_span("model_host.predict", kind=SpanKind.CLIENT,
                                          links=[Link(root.get_span_context(), {"why": "x"})]):
            pass
        root.set_status(Status(StatusCode.ERROR, "model: unavailable"))
    encoder = SpanLineEncoder()
    assert len(kept.spans) == 2
    for span in kept.spans:
        line = encoder.line(span)
        assert "\n" not in line
        assert json.loads(line) == json.loads(span.to_json())


def _drive(sampler, clock: ManualClock, rate: float, seconds: int, robots: int = 1) -> list[int]:
    """Kept traces per robot for ``rate`` new traces a second, robots taking turns."""
    import random

    draw = random.Random(7)
    kept = [0] * robots
    for n in range(int(rate * seconds)):
        clock.now = n / rate
        result = sampler.should_sample(None, draw.getrandbits(128), "gateway.frame")
        kept[n % robots] += result.decision.is_sampled()
    return kept


def test_a_demo_rate_keeps_every_trace() -> None:
    from edgeloop.platform.telemetry import RateLimitedSampler

    clock = ManualClock(0.0)
    assert _drive(RateLimitedSampler(50, clock=clock), clock, rate=12, seconds=30) == [360]


def test_a_fleet_rate_keeps_about_the_limit_and_every_robot_its_share() -> None:
    from edgeloop.platform.telemetry import RateLimitedSampler

    clock = ManualClock(0.0)
    # 100 robots at 4 fps, always in the same order: the first of each turn must not win
    kept = _drive(RateLimitedSampler(50, clock=clock), clock, rate=400, seconds=60, robots=100)
    assert 0.7 * 50 * 60 < sum(kept) <= 50 * 61
    assert min(kept) >= 10  # each robot's expected share is ~30 frames


def test_a_burst_never_keeps_more_than_the_limit_in_a_second() -> None:
    from edgeloop.platform.telemetry import RateLimitedSampler

    clock = ManualClock(0.0)
    sampler = RateLimitedSampler(50, clock=clock)
    _drive(sampler, clock, rate=10, seconds=5)  # quiet: the next window keeps everything
    clock.now = 5.0
    burst = sum(sampler.should_sample(None, n, "gateway.frame").decision.is_sampled()
                for n in range(1000))
    assert burst == 50


def test_the_default_limits_new_traces_and_children_follow_their_parent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.platform.telemetry import tracer_provider
    from opentelemetry import trace

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("EDGELOOP_TRACES_PER_SECOND", "5")
    tracer = tracer_provider("limit-test").get_tracer("t")
    roots = [tracer.start_span("gateway.frame") for _ in range(200)]
    kept = [root for root in roots if root.is_recording()]
    # 5 in the first second; a machine slower than 200 spans a second adds a few more
    assert 5 <= len(kept) <= 10
    # a robot's frame comes with a traceparent marked sampled: limited all the same
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    robot = [TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"}) for n in range(200)]
    assert sum(tracer.start_span("gateway.frame", context=c).is_recording() for c in robot) <= 10
    assert all(tracer.start_span("rpc", context=c).is_recording() for c in robot)
    # rare traces are never limited: a drift event or a sweep is always kept
    assert all(tracer.start_span("sweep").is_recording() for _ in range(200))
    for root in roots:  # a kept trace stays whole, a dropped one stays dropped
        child = tracer.start_span("predict", context=trace.set_span_in_context(root))
        assert child.is_recording() == root.is_recording()


def test_the_trace_limit_is_configurable_and_bad_values_are_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.platform.telemetry import default_sampler, tracer_provider

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("EDGELOOP_TRACES_PER_SECOND", "0")  # every trace
    tracer = tracer_provider("limit-test").get_tracer("t")
    assert all(tracer.start_span("gateway.frame").is_recording() for _ in range(500))
    for bad, message in (("many", "not a number"), ("-1", "must be 0"), ("inf", "must be 0")):
        monkeypatch.setenv("EDGELOOP_TRACES_PER_SECOND", bad)
        with pytest.raises(ValueError, match=f"EDGELOOP_TRACES_PER_SECOND: {message}"):
            default_sampler()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the standard variable wins
    assert not tracer_provider("limit-test").get_tracer("t").start_span("sweep").is_recording()
