"""Structured logging: one JSON object a line on stderr, with context and trace ids.

Context (device, deployment, observation id, ...) is bound with :func:`log_context`
and added to every record logged inside it, across ``await`` points.

A service's log holds its own lines only in that format: libraries that write text of
their own are routed through it (:func:`route_library_output`): Python warnings become
records, MLflow's and Ray's loggers give up their own handlers, and MLflow's progress bars
and "View run" prints are off. What is still printed to ``sys.stdout`` in a service (Ray's
driver prints a dead worker's error there) becomes a warning of logger ``stdout``
(:func:`printed_lines_to_log`). TensorFlow's C++ start-up lines are caught where it is
imported (``tensorflow_import``).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import trace

# The default is a read-only empty mapping, shared by every context: log_context never mutates
# the current mapping, it sets a new dict.
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "edgeloop_log_context", default=MappingProxyType({}))
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName",
                                                         "color_message", "_ray_timestamp_ns"}
# color_message: uvicorn's copy of the message with ANSI colour codes, for terminals only.
# _ray_timestamp_ns: the creation time again, which Ray's record factory adds to every
# record of a process that imported Ray (the trainer's lines carried it).


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the ``with`` block."""
    token = _CONTEXT.set({**_CONTEXT.get(),
                          **{k: v for k, v in fields.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_log_context() -> Mapping[str, Any]:
    """The fields :func:`log_context` binds here (to bind them again in another process)."""
    return _CONTEXT.get()


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_CONTEXT.get())
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields.setdefault("trace_id", format(span.trace_id, "032x"))
        fields.setdefault("span_id", format(span.span_id, "016x"))
    return fields


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_record_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Formats a record as one readable line with its context as key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _record_fields(record).items())
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} " \
               f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            line += f"  [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


LoggingSetup = tuple[str, str, str]
"""The arguments of the last :func:`configure_logging` call: service, level, format."""
_SETUP: LoggingSetup | None = None


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send all logging to stderr in ``fmt`` ("json" or "text") at ``level``."""
    global _SETUP
    _SETUP = (service, level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("grpc", "urllib3", "botocore", "alembic", "absl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    route_library_output()


def logging_setup() -> LoggingSetup | None:
    """How :func:`configure_logging` set this process up (None if it was not called), so a
    child process can log the same way."""
    return _SETUP


LIBRARY_OUTPUT_ENV: dict[str, str] = {
    # MLflow gives its logger a plain-text stdout handler at import unless told not to
    "MLFLOW_CONFIGURE_LOGGING": "false",
    # a tqdm bar on stderr for every artifact download (each warm start, each registration)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # "🏃 View run ... at: <url>" on stdout for every run ended; our records carry run ids
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
"""Library settings that keep their own text out of a service's log (a user's value wins)."""
SELF_HANDLED_LOGGERS = ("mlflow", "ray", "ray.serve")
"""Loggers their libraries give a handler of their own (plain text, not propagated)."""
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_STDOUT_LOG = logging.getLogger("stdout")


class PlainText(logging.Filter):
    """Takes terminal colour codes out of a record's message (MLflow colours its warnings,
    Ray its printed errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b[" in message:
            record.msg, record.args = _ANSI_ESCAPE.sub("", message), None
        return True


class DropNotice(logging.Filter):
    """Drops the records whose message holds ``text`` (on the logger it is added to)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def drop_library_notices(notices: Iterable[tuple[str, str]]) -> None:
    """Drop a library's notices that ask an operator for nothing: each ``(logger name,
    text)`` pair filters that logger's records holding the text (Python warnings are records
    of ``py.warnings``, see :func:`route_library_output`). Idempotent."""
    for name, text in notices:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNotice) and f.text == text for f in logger.filters):
            logger.addFilter(DropNotice(text))


def route_library_output() -> None:
    """Send what MLflow, Ray and ``warnings`` write through the root logger's handler."""
    logging.captureWarnings(True)
    for coloured in (logging.getLogger("py.warnings"), _STDOUT_LOG):
        if not any(isinstance(f, PlainText) for f in coloured.filters):
            coloured.addFilter(PlainText())
    for name, value in LIBRARY_OUTPUT_ENV.items():
        os.environ.setdefault(name, value)
    for name in SELF_HANDLED_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True


class PrintedLines(io.TextIOBase):
    """A service's ``sys.stdout``: each line printed becomes a warning of logger ``stdout``.

    A server prints nothing on purpose, so a printed line is a library speaking in its own
    format (:class:`PlainText` takes its colour codes out). Writes through :meth:`fileno`
    reach the real stream.
    """

    def __init__(self, original: io.TextIOBase) -> None:
        super().__init__()
        self._original = original
        self._pending = ""
        self._lock = threading.Lock()  # Ray prints from its own threads

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                _STDOUT_LOG.warning("%s", line)
        return len(text)


def printed_lines_to_log() -> None:
    """Make ``sys.stdout`` a :class:`PrintedLines` (a service's entry point calls it once)."""
    if not isinstance(sys.stdout, PrintedLines):
        sys.stdout = PrintedLines(sys.stdout)
