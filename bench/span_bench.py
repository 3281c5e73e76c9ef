"""Span bench: CPU per frame of the gateway's tracing, every frame traced versus sampled.

A frame makes two spans in the gateway (``frame`` and its ``model_host.predict`` child);
the local stack exports them to a span file (``EDGELOOP_TRACE_FILE``) through a batch
processor. This times exactly that, with the platform's own tracer provider, once with
every trace kept (the default) and once with OpenTelemetry's standard ``traceidratio``
sampler, which an operator sets with ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``.

    uv run python bench/span_bench.py            # --frames N --ratio R
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from edgeloop.platform.telemetry import tracer_provider
from opentelemetry import trace


def cpu_ms_per_frame(frames: int, span_file: Path) -> float:
    """CPU ms per frame for the gateway's two spans per frame, export to ``span_file`` included."""
    provider = tracer_provider("span-bench", trace_file=str(span_file))
    tracer = provider.get_tracer("span-bench")
    started = time.process_time()
    for seq in range(frames):
        with tracer.start_as_current_span("frame", attributes={"edgeloop.device_id": "robot-1",
                                                               "edgeloop.seq": seq}) as span:
            with tracer.start_as_current_span("model_host.predict", kind=trace.SpanKind.CLIENT,
                                              attributes={"edgeloop.model_name": "distance",
                                                          "edgeloop.model_version": "1"}):
                pass
            span.set_attributes({"edgeloop.deployment": "parking", "edgeloop.arm": "stable",
                                 "edgeloop.model_name": "distance",
                                 "edgeloop.model_version": "1",
                                 "edgeloop.observation_id": f"obs-{seq}"})
        if seq % 200 == 199:
            time.sleep(0.1)  # at most 2,000 frames/s: the exporter keeps up, no span is dropped
    provider.shutdown()  # flushes: the export's CPU counts too
    return (time.process_time() - started) / frames * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--ratio", type=float, default=0.01, help="sampled fraction")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        every = cpu_ms_per_frame(args.frames, Path(folder) / "every.jsonl")
        os.environ["OTEL_TRACES_SAMPLER"] = "traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(args.ratio)
        sampled = cpu_ms_per_frame(args.frames, Path(folder) / "sampled.jsonl")
    print(f"every frame traced:        {every:.3f} CPU ms per frame")
    print(f"traceidratio {args.ratio:g}: {sampled:>11.3f} CPU ms per frame")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
