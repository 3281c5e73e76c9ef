"""TensorFlow imported without the libraries Keras loads only in case they are used.

Keras 3 imports scikit-learn (its scikit-learn wrappers), pandas (to slice DataFrames) and
matplotlib (an image-gallery plot) while it is imported, whenever they are installed, and
MLflow installs all three. No edgeloop process uses them through Keras, yet they are about
a third of TensorFlow's import: on the 2-core dev VM ``import tensorflow, keras`` takes
15 CPU seconds with them and 9–10 without. Every process that imports TensorFlow pays it:
the gateway at start, the registry's TensorFlow child, each of the trainer's Ray trial
workers and its registration child (on a sweep's critical path) and each Ray Serve replica.

So those processes call :func:`import_tensorflow` before anything else imports TensorFlow.
The three libraries stay importable afterwards (MLflow still uses pandas); only Keras's
optional integrations with them are off in that process.

The import also keeps TensorFlow's C++ start-up lines out of the service's log as raw text
(``I0000 ... port.cc:153] oneDNN custom operations are on``, the CPU-feature banner, and
``failed call to cuInit`` on a machine without a GPU: eight to ten lines per process, written
straight to file descriptor 2 before absl logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does
not reach them). :func:`import_tensorflow` points descriptor 2 at a temporary file while
TensorFlow imports and finds its devices, then logs each line as a record of this module
(info lines and the no-GPU ``cuInit`` error at debug, warnings and errors as such, the C++
source in ``source``); a line that is not TensorFlow's goes back to stderr as it was. Lines
TensorFlow writes later are caught where the code that makes them runs inside
:func:`native_lines_logged`: every call in a
:class:`~edgeloop.platform.tensorflow_process.TensorFlowProcess` (the TFLite converter's
lines), and the gateway's LiteRT runner (LiteRT's ``INFO: Created TensorFlow Lite XNNPACK
delegate`` line).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\] (.*)$")
_LITERT_LINE = re.compile(r"^(INFO|WARNING|ERROR): (.*)$")  # LiteRT's own, no source
_NATIVE_LEVELS = {"I": logging.DEBUG, "W": logging.WARNING, "E": logging.ERROR,
                  "F": logging.CRITICAL}
_CAPTURE = threading.RLock()  # descriptor 2 is the process's: one capture at a time
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_NO_GPU = "failed call to cuInit"

KERAS_OPTIONAL_IMPORTS = ("sklearn", "pandas", "matplotlib")
"""Libraries Keras imports at import time only to offer integrations edgeloop does not use."""


def import_tensorflow() -> None:
    """Import TensorFlow and Keras once, without Keras's optional libraries; idempotent.

    A library already imported stays as it is (nothing is unloaded); one not yet imported
    is hidden while TensorFlow and Keras import, and importable again afterwards.
    """
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    hidden = [name for name in KERAS_OPTIONAL_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        with native_lines_logged():
            tensorflow = importlib.import_module("tensorflow")
            importlib.import_module("keras")
            # finding the devices is where cuInit fails on a machine without a GPU; it
            # leaves the thread pools unset (set_tf_threads may still size them)
            tensorflow.config.list_physical_devices()
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextlib.contextmanager
def native_lines_logged() -> Iterator[None]:
    """Log what is written to file descriptor 2 inside the block (module doc), after it.

    Everything the process writes to stderr in the meantime waits for the block's end;
    the lines that are not TensorFlow's are written back unchanged, in their order, after
    TensorFlow's records.
    """
    with _CAPTURE:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        with _captured(saved):
            yield


@contextlib.contextmanager
def _captured(saved: int) -> Iterator[None]:
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log_native_lines(sink.read().decode(errors="replace"))


def log_native_lines(text: str) -> None:
    """Log TensorFlow's C++ lines in ``text`` as records; write the other lines to stderr."""
    others: list[str] = []
    record: list[str] | None = None  # [level letter, source, message]: continuation lines join
    for line in text.splitlines():
        if line.startswith(_ABSL_BANNER) or not line.strip():
            continue
        match = _NATIVE_LINE.match(line)
        litert = None if match else _LITERT_LINE.match(line)
        if match or litert:
            _log_native(record)
            record = [match[1], match[2], match[3]] if match else [litert[1][0], "", litert[2]]
        elif record is not None and not line.startswith(("{", "Traceback")):
            record[2] += "\n" + line  # the CPU banner's second line, say
        else:  # not TensorFlow's, and neither are the lines that follow it
            _log_native(record)
            record = None
            others.append(line)
    _log_native(record)
    if others:
        sys.stderr.write("\n".join(others) + "\n")
        sys.stderr.flush()


def _log_native(record: list[str] | None) -> None:
    if record is None:
        return
    letter, source, message = record
    level = logging.DEBUG if _NO_GPU in message else _NATIVE_LEVELS[letter]
    log.log(level, "tensorflow: %s", message, extra={"source": source} if source else {})
