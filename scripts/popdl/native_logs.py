"""Keep TensorFlow's start-up chatter off the console and out of the logs.

TensorFlow 2.20 and later log through Abseil before anything has initialised
it, so its INFO lines (``oneDNN custom operations are on``, ``This
TensorFlow binary is optimized to use available CPU instructions``) go
straight to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says.
:func:`filtered_stderr` puts a pipe in front of descriptor 2 for the
duration of a command and drops those lines only: TensorFlow's warnings and
errors (``W``/``E``/``F`` lines), Python's own messages and anything else
pass through unchanged and in order.  ``popdl -v`` (or
``TF_CPP_MIN_LOG_LEVEL=0``) keeps everything.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager

NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # Abseil's INFO lines: I<mmdd> <hh:mm:ss.uuuuuu> <thread> <file>:<line>] <message>
    rb"|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-/]+:\d+\] .*"
    # the second line of cpu_feature_guard's INFO message
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)\r?$")


def is_noise(line: bytes) -> bool:
    """Whether one line of standard error (without its newline) is start-up chatter to drop."""
    return NOISE.match(line) is not None


def _pump(read_fd: int, out_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``out_fd`` until end of file, leaving out the noise."""
    pending = b""
    try:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
            if kept:
                _write_all(out_fd, kept)
        if pending and not is_noise(pending):
            _write_all(out_fd, pending)
    except OSError:
        pass
    finally:
        os.close(read_fd)
        os.close(out_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextmanager
def filtered_stderr(enabled: bool = True):
    """Drop TensorFlow's start-up INFO lines from file descriptor 2 inside the block."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no descriptor 2 (a detached process): nothing to filter
        yield
        return
    sys.stderr.flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, os.dup(saved)), name="popdl-stderr", daemon=True)
    pump.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes this process's last write end of the pipe: the pump sees its end
        os.close(saved)
        pump.join(timeout=10)


def wanted(verbose: bool, environ=None) -> bool:
    """Filter unless the user asked for everything (``-v``, or ``TF_CPP_MIN_LOG_LEVEL=0``)."""
    environ = os.environ if environ is None else environ
    return not verbose and environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() != "0"
