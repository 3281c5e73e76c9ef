"""`edgeloop trace` prints the span tree written by the platform's file exporter."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.platform.telemetry import FileSpanExporter, Rotation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link


def _provider(folder: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(folder / f"{service}.jsonl")))
    return provider


def test_trace_prints_tree_with_linked_spans(tmp_path: Path) -> None:
    gateway = _provider(tmp_path, "edgeloop-gateway").get_tracer("test")
    features = _provider(tmp_path, "edgeloop-features").get_tracer("test")
    with (
        gateway.start_as_current_span("frame", attributes={"edgeloop.device": "car-1"}) as frame,
        gateway.start_as_current_span("model_host.predict"),
    ):
        pass
    other = _provider(tmp_path, "edgeloop-gateway").get_tracer("test")
    with other.start_as_current_span("unrelated"):
        pass
    with (
        features.start_as_current_span("ingest.batch", links=[Link(frame.get_span_context())]),
        features.start_as_current_span("db.insert"),
    ):
        pass
    trace_id = format(frame.get_span_context().trace_id, "032x")

    result = CliRunner().invoke(cli, ["trace", trace_id, "--traces-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [name for name in ("frame", "model_host.predict", "ingest.batch", "db.insert")
             if any(name in line for line in lines)]
    assert names == ["frame", "model_host.predict", "ingest.batch", "db.insert"]
    assert "unrelated" not in result.output
    assert "edgeloop.device = car-1" in result.output
    assert "linked" in result.output
    predict = next(i for i, line in enumerate(lines) if "model_host.predict" in line)
    frame_line = next(i for i, line in enumerate(lines)
                      if "frame" in line and "edgeloop-gateway" in line)
    assert predict > frame_line


def test_unknown_trace_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["trace", "0" * 32, "--traces-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no spans of trace" in result.output


def test_trace_reads_rotated_files(tmp_path: Path) -> None:
    """A long trace spread over a rotated span file and its backups shows whole."""
    provider = TracerProvider(resource=Resource.create({"service.name": "edgeloop-features"}))
    exporter = FileSpanExporter(tmp_path / "features.jsonl",
                                Rotation(max_bytes=1_500, max_age_s=0, backups=20))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("monitor.evaluate") as root:
        for n in range(12):
            with tracer.start_as_current_span(f"query-{n}"):
                pass
    assert len(list(tmp_path.glob("features.*.jsonl"))) >= 2  # it did rotate
    trace_id = format(root.get_span_context().trace_id, "032x")

    result = CliRunner().invoke(cli, ["trace", trace_id, "--traces-dir", str(tmp_path),
                                      "--no-attributes"])

    assert result.exit_code == 0, result.output
    assert "monitor.evaluate" in result.output
    assert all(f"query-{n} " in result.output for n in range(12)), result.output


def test_the_local_stack_passes_span_export_settings_to_every_service(
        tmp_path: Path, monkeypatch) -> None:
    from edgeloop.compose.stack.topology import DEFAULT_PORTS, SERVICES, Topology

    monkeypatch.setenv("EDGELOOP_OTLP_ENDPOINT", "127.0.0.1:4317")
    monkeypatch.setenv("EDGELOOP_TRACE_FILE_MAX_BYTES", "1000000")
    monkeypatch.setenv("EDGELOOP_TRACES_PER_SECOND", "0")
    monkeypatch.delenv("EDGELOOP_TRACE_FILE_BACKUPS", raising=False)
    topology = Topology(tmp_path, dict(DEFAULT_PORTS))
    secrets = {k: "x" * 32 for k in ("admin_token", "read_token", "webhook_secret",
                                               "trainer_token")}
    for service in SERVICES:
        env = topology.service_env(service, secrets)
        assert env["EDGELOOP_OTLP_ENDPOINT"] == "127.0.0.1:4317"
        assert env["EDGELOOP_TRACE_FILE_MAX_BYTES"] == "1000000"
        assert env["EDGELOOP_TRACES_PER_SECOND"] == "0"
        assert "EDGELOOP_TRACE_FILE_BACKUPS" not in env
        assert env["EDGELOOP_TRACE_FILE"].endswith(f"traces/{service}.jsonl")  # files stay
