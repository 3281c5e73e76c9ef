"""Trial spans from worker processes reach an OTLP collector under the sweep's span.

The trial-side code (``trial_span``) runs in other processes with the trial config the
trainer builds (``trace_config``: the sweep's traceparent and its OTLP endpoint), exactly
as ``train_trial`` opens its span; training itself is left out (the sweep tests cover
it). First in a plain child process whose environment lacks the endpoint (as a Ray node
on another machine does: only the config carries it), then in the session's local Ray
workers (``ray_info``). The collector is an OTLP/gRPC receiver run by the test
(``edgeloop.testing.OtlpReceiver``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from edgeloop.platform.telemetry import tracer_provider
from edgeloop.testing import OtlpReceiver
from edgeloop.trainer.trial_tracing import OTLP_KEY, trace_config


def _trial(config: dict[str, Any], trial_id: str) -> int:
    """A trial's tracing as train_trial does it, inside a Ray worker; returns its pid."""
    import os

    from edgeloop.trainer.trial_tracing import trial_span

    with trial_span(config, trial_id) as span:
        span.set_attribute("edgeloop.best_val_mae_mm", 12.5)
    return os.getpid()


_CHILD = """
import json, os, sys
from edgeloop.trainer.trial_tracing import trial_span
with trial_span(json.loads(sys.argv[1]), "trial-child") as span:
    span.set_attribute("edgeloop.best_val_mae_mm", 9.0)
print(os.getpid())
"""


def test_a_worker_without_the_trainer_environment_exports_where_the_config_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as collector:
        monkeypatch.setenv("EDGELOOP_OTLP_ENDPOINT", collector.endpoint)
        provider = tracer_provider("trainer", collector.endpoint)
        try:
            with provider.get_tracer("test").start_as_current_span("trainer.sweep") as sweep:
                config = trace_config()
        finally:
            provider.shutdown()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EDGELOOP_OTLP", "EDGELOOP_TRACE", "OTEL_"))}
        child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(config)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == 0, child.stderr
        spans = collector.wait_for(lambda got: any(s.name == "sweep.trial.train" for s in got))
    (trial,) = [s for s in spans if s.name == "sweep.trial.train"]
    context = sweep.get_span_context()
    assert trial.pid == int(child.stdout.split()[-1]) != os.getpid()
    assert trial.trace_id == format(context.trace_id, "032x")
    assert trial.parent_id == format(context.span_id, "016x")
    assert trial.attributes["edgeloop.trial_id"] == "trial-child"


def test_trial_spans_from_ray_workers_reach_the_collector(
        ray_info: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    with OtlpReceiver() as collector:
        monkeypatch.setenv("EDGELOOP_OTLP_ENDPOINT", collector.endpoint)
        monkeypatch.delenv("EDGELOOP_TRACE_FILE", raising=False)
        provider = tracer_provider("trainer", collector.endpoint)
        try:
            with provider.get_tracer("test").start_as_current_span("trainer.sweep") as sweep:
                config = {**trace_config(), "architecture": "cnn", "learning_rate": 0.001}
            assert config[OTLP_KEY] == collector.endpoint
            trial = ray.remote(num_cpus=0)(_trial)
            pids = ray.get([trial.remote(config, f"trial-{n}") for n in range(2)], timeout=300)
        finally:
            provider.shutdown()
        spans = collector.wait_for(
            lambda got: sum(s.name == "sweep.trial.train" for s in got) >= 2
            and any(s.name == "trainer.sweep" for s in got))

    context = sweep.get_span_context()
    trials = [s for s in spans if s.name == "sweep.trial.train"]
    assert {s.attributes["edgeloop.trial_id"] for s in trials} == {"trial-0", "trial-1"}
    for span in trials:
        assert span.trace_id == format(context.trace_id, "032x")
        assert span.parent_id == format(context.span_id, "016x")
        assert span.service == "edgeloop-trainer"
        assert span.attributes["edgeloop.trial.architecture"] == "cnn"
        assert span.attributes["edgeloop.best_val_mae_mm"] == 12.5
    # exported by the Ray worker processes themselves, not by this (driver) process
    assert {s.pid for s in trials} == set(pids) and os.getpid() not in pids


_STOPPED_CHILD = """
import json, sys, threading
from edgeloop.trainer.trial_tracing import trial_span

inside = threading.Event()

def train():  # blocks inside its span forever, like a trial stopped in tune.report
    with trial_span(json.loads(sys.argv[1]), "trial-stopped"):
        inside.set()
        threading.Event().wait()

threading.Thread(target=train, daemon=True).start()
assert inside.wait(240), "the trial never opened its span"
"""


def test_a_trial_stopped_inside_its_span_still_exports_it(tmp_path) -> None:
    """ASHA stops trials early: Tune ends the worker with the trial's thread still inside
    ``trial_span``; its span must reach the sweep's trace anyway, marked as stopped."""
    from edgeloop.platform.span_files import read_spans

    trace_file = tmp_path / "trainer.jsonl"
    config = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
              "trace_otlp_endpoint": "", "trace_file": str(trace_file)}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGELOOP_OTLP", "EDGELOOP_TRACE", "OTEL_"))}
    child = subprocess.run([sys.executable, "-c", _STOPPED_CHILD, json.dumps(config)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    (span,) = [s for s in read_spans(tmp_path) if s.name == "sweep.trial.train"]
    assert span.trace_id == "ab" * 16 and span.parent_id == "cd" * 8
    assert span.attributes["edgeloop.trial_id"] == "trial-stopped"
    assert span.attributes["edgeloop.trial_stopped"] is True


def test_a_stopped_trial_whose_worker_is_reused_ends_its_span_as_stopped(tmp_path) -> None:
    """With ``reuse_actors`` Tune wakes a stopped trial's ``tune.report`` with SystemExit
    to hand the worker to the next trial: the span ends then, stopped, not failed."""
    from edgeloop.platform.span_files import read_spans
    from edgeloop.trainer.trial_tracing import trial_span

    config = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
              "trace_otlp_endpoint": "", "trace_file": str(tmp_path / "trainer.jsonl")}
    with pytest.raises(SystemExit), trial_span(config, "trial-reused"):
        sys.exit(0)
    (span,) = [s for s in read_spans(tmp_path) if s.name == "sweep.trial.train"]
    assert span.attributes["edgeloop.trial_stopped"] is True
    assert span.status != "ERROR"


def test_the_driver_records_one_trial_span_per_trial_whatever_its_worker_does() -> None:
    from edgeloop.trainer.trial_tracing import TrialSpans
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = SdkProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("sweep.tune") as tune_span:
        spans = TrialSpans()
    spans.tracer = tracer
    config = {"learning_rate": 0.001, "epochs": 10, "arrays_path": "/not/an/attribute"}
    spans.started("t0", config)
    spans.started("t1", config)
    spans.started("t2", config)
    spans.started("t2", config, resumed=True)  # paused at its rung, then resumed
    spans.started("t1", config)  # its worker died: Tune starts it again
    spans.ended("t0", "TERMINATED", {"epoch": 2, "best_val_mae_mm": 7.5})  # stopped early
    spans.ended("t1", "ERROR", {"epoch": 4})
    spans.close()  # t2 never ended: the sweep was cancelled

    trials = [s for s in exporter.get_finished_spans() if s.name != "sweep.tune"]
    got = {s.attributes["edgeloop.trial_id"]: s for s in trials}
    assert sorted(got) == ["t0", "t1", "t2"] and len(trials) == 3
    assert all(s.name == "sweep.trial" for s in trials)
    assert all(s.parent.span_id == tune_span.get_span_context().span_id for s in got.values())
    assert got["t0"].attributes["edgeloop.trial.status"] == "TERMINATED"
    assert got["t0"].attributes["edgeloop.trial.epochs_done"] == 2
    assert got["t0"].attributes["edgeloop.best_val_mae_mm"] == 7.5
    assert got["t0"].attributes["edgeloop.trial.learning_rate"] == "0.001"
    assert "edgeloop.trial.arrays_path" not in got["t0"].attributes
    assert got["t1"].status.status_code.name == "ERROR"
    assert [e.name for e in got["t1"].events] == ["started again after its worker failed"]
    assert got["t2"].attributes["edgeloop.trial.status"] == "CANCELLED"
    assert [e.name for e in got["t2"].events] == ["resumed after its rung"]
