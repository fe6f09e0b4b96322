"""The host's start-up chatter, kept out of the CLI's output and summed up in one line.

ComfyUI prints its device and attention set-up, and a traceback plus "IMPORT FAILED" for
every optional extra whose package is not installed (kornia for its Canny and morphology
nodes, ...). None of that concerns a ConsiStory run; it is captured at the file-descriptor
level (the host writes through print, logging handlers and C libraries) and summarised.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile


class _Captured:
    def __init__(self, file):
        self.file = file

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")


@contextlib.contextmanager
def quiet_fds():
    """Sends file descriptors 1 and 2 to a temporary file for the duration; yields its reader."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield _Captured(file)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def host_output_summary(text: str, device: str) -> str:
    """One line about what the host said while starting, and the device it computes on."""
    missing = sorted(set(re.findall(r"No module named '([\w.]+)'", text)))
    failed = sorted(set(re.findall(r"IMPORT FAILED: ([\w.]+)", text)))
    line = f"ComfyUI is up on {device}"
    if failed:
        line += (f"; {len(failed)} optional ComfyUI node file(s) did not load ({', '.join(failed)}: "
                 f"missing {', '.join(missing) or 'packages'}), none of which this run uses")
    return line


class NodeErrorLog(logging.Filter):
    """Drops the host's log of a failing node ("!!! Exception during processing !!!" and its
    traceback): the runner prints the node's message once, as one ``error:`` line. Also the
    checkpoint loader's "not a checkpoint file, trying to load it as a diffusion model only":
    the runner needs a whole checkpoint, and says so in that line when the file is none."""

    DROPPED = ("!!! Exception during processing", "Traceback (most recent call last)",
               "Warning, This is not a checkpoint file")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.DROPPED)


@contextlib.contextmanager
def node_errors_once():
    """While a graph runs, the host's own log of a node error is left out."""
    root, log_filter = logging.getLogger(), NodeErrorLog()
    root.addFilter(log_filter)
    try:
        yield
    finally:
        root.removeFilter(log_filter)
