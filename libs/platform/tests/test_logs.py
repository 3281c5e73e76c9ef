"""A service's log is its own JSON lines: libraries that write text of their own go through it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from edgeloop.platform.tensorflow_import import log_native_lines

LIBRARIES = """
import logging, os, sys, warnings
import mlflow  # before configure_logging, as in the trainer: MLflow has set its handler up
from ray import serve  # likewise the Ray Serve host: Serve's import gives "ray.serve" its own
from edgeloop.platform.logs import configure_logging, printed_lines_to_log

configure_logging("probe", "INFO", "json")
logging.getLogger("mlflow.tracking").warning("from mlflow")
logging.getLogger("ray.tune").warning("from ray")
logging.getLogger("ray.serve").warning("from serve")
warnings.warn("\\x1b[1;33ma library's warning\\x1b[0m")  # coloured, as MLflow's are
settings = (os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"],
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"],
            os.environ["MLFLOW_CONFIGURE_LOGGING"])
os.write(1, (" ".join(settings) + "\\n").encode())  # the real stdout, for the test to read
printed_lines_to_log()
print("\\x1b[33m(raylet)\\x1b[0m A worker died", flush=True)  # Ray's driver does so
print("half a line, ", end="")
print("then the rest")
"""


def _json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a line of the log is not JSON: {line!r}")
    return records


def test_mlflow_ray_and_warnings_are_records_of_the_service() -> None:
    result = subprocess.run([sys.executable, "-c", LIBRARIES], capture_output=True, text=True,
                            timeout=300, check=True)
    records = _json_lines(result.stderr)
    by_logger = {r["logger"]: r for r in records}
    assert by_logger["mlflow.tracking"]["msg"] == "from mlflow"
    assert by_logger["ray.tune"]["msg"] == "from ray"
    assert by_logger["ray.serve"]["msg"] == "from serve"
    assert "UserWarning: a library's warning\n" in by_logger["py.warnings"]["msg"]
    assert all(r["service"] == "probe" for r in records)
    assert result.stdout.split() == ["false", "true", "false"], "nothing printed reaches stdout"
    printed = [(r["level"], r["msg"]) for r in records if r["logger"] == "stdout"]
    assert printed == [("warning", "(raylet) A worker died"),
                       ("warning", "half a line, then the rest")]


def test_tensorflows_native_lines_become_records_and_other_lines_stay(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "\n".join([
        "some library's own line",  # before any of TensorFlow's: not one of them
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796404902.051753   32689 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796404902.271426   32689 cpu_feature_guard.cc:227] This TensorFlow binary",
        "To enable the following instructions: AVX2 FMA, rebuild TensorFlow.",
        '{"ts": "2026-12-04T17:21:45.554Z", "level": "info", "msg": "another thread"}',
        "E0000 00:00:1796404948.709062    1189 cuda_platform.cc:52] failed call to cuInit: x",
        "W0000 00:00:1796405967.237351    1890 helpers.cc:364] Ignored output_format.",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",  # LiteRT's format
        "E0000 00:00:1796405967.237351    1890 loader.cc:9] could not load the plugin",
        "Traceback (most recent call last):",  # Python's own, even right after one of them
        '  File "x.py", line 1, in <module>',
    ])
    with caplog.at_level(logging.DEBUG, logger="edgeloop.platform.tensorflow_import"):
        log_native_lines(text + "\n")
    got = [(r.levelno, r.getMessage(), getattr(r, "source", None)) for r in caplog.records]
    assert got == [
        (logging.DEBUG, "tensorflow: oneDNN custom operations are on.", "port.cc:153"),
        (logging.DEBUG, "tensorflow: This TensorFlow binary\nTo enable the following "
                        "instructions: AVX2 FMA, rebuild TensorFlow.", "cpu_feature_guard.cc:227"),
        # cuInit failing is how TensorFlow finds no GPU: not an error on a CPU machine
        (logging.DEBUG, "tensorflow: failed call to cuInit: x", "cuda_platform.cc:52"),
        (logging.WARNING, "tensorflow: Ignored output_format.", "helpers.cc:364"),
        (logging.DEBUG, "tensorflow: Created TensorFlow Lite XNNPACK delegate for CPU.", None),
        (logging.ERROR, "tensorflow: could not load the plugin", "loader.cc:9"),
    ]
    assert capsys.readouterr().err.splitlines() == [
        "some library's own line",
        '{"ts": "2026-12-04T17:21:45.554Z", "level": "info", "msg": "another thread"}',
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
    ]


def test_captures_from_several_threads_leave_stderr_where_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Descriptor 2 is the process's: two threads capturing at once (two LiteRT runners
    loading) must not leave it pointing at one of their temporary files."""
    import os
    import threading

    from edgeloop.platform.tensorflow_import import native_lines_logged

    before = os.fstat(2).st_ino

    def capture(name: str) -> None:
        for i in range(50):
            with native_lines_logged():
                os.write(2, f"I0000 00:00:1.0 1 {name}.cc:{i}] line {i}\n".encode())

    with caplog.at_level(logging.DEBUG, logger="edgeloop.platform.tensorflow_import"):
        threads = [threading.Thread(target=capture, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert os.fstat(2).st_ino == before
    assert len([r for r in caplog.records if r.getMessage().startswith("tensorflow: line")]) == 100


def test_libraries_copies_of_a_records_message_and_time_are_left_out() -> None:
    from edgeloop.platform.logs import JsonFormatter

    record = logging.makeLogRecord({
        "name": "uvicorn.error", "levelno": logging.INFO, "levelname": "INFO",
        "msg": "Started server process [%d]", "args": (7,),
        "color_message": "Started server process [\x1b[36m%d\x1b[0m]", "port": 8080,
        "_ray_timestamp_ns": 1796645021613631933})
    entry = json.loads(JsonFormatter("console").format(record))
    assert entry["msg"] == "Started server process [7]"
    assert entry["port"] == 8080  # other fields of the record stay
    assert "color_message" not in entry and "_ray_timestamp_ns" not in entry
