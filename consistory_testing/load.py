"""A busy CPU beside a test: what a shared CI machine does to it."""
from __future__ import annotations

import contextlib
import subprocess
import sys


@contextlib.contextmanager
def busy_cpu(processes: int = 1):
    """Keeps ``processes`` processes spinning on the CPU for the duration; always stops them."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for p in spinning:
            p.kill()
            p.wait()
