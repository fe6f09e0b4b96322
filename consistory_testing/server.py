"""Start the host's own server (main.py) on loopback with a temporary base folder that has
this pack (and the tiny test models) in its custom_nodes; always stop it again."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from consistory_run.host import PACK_DIR, PACK_NAME, comfyui_path

TEST_NODES = f'''"""Test-only nodes: the tiny random-weight models and probes of comfyui-consistory."""
import sys
sys.path.append({str(PACK_DIR)!r})
from consistory_testing import probes, tiny_models
NODE_CLASS_MAPPINGS = {{**tiny_models.NODE_CLASS_MAPPINGS, **probes.NODE_CLASS_MAPPINGS}}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_base(base: Path, archive: bool = False) -> list[str]:
    """Folders of a throwaway ComfyUI base; returns the main.py arguments that use them. The
    pack is this repository linked in, with the test nodes beside it; archive: a copy of what
    a Registry archive holds (consistory_testing.archive), alone."""
    for name in ("custom_nodes", "input", "output", "temp", "user", "models/checkpoints"):
        (base / name).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if archive and not link.exists():
        from .archive import copy_archive
        copy_archive(link)
    elif not link.exists():
        link.symlink_to(PACK_DIR, target_is_directory=True)
    if not archive:
        (base / "custom_nodes" / "consistory_test_nodes.py").write_text(TEST_NODES)
    args = ["--output-directory", str(base / "output"), "--input-directory", str(base / "input"),
            "--temp-directory", str(base / "temp")]
    host = comfyui_path()
    if "--base-directory" in (host / "comfy" / "cli_args.py").read_text():
        return args + ["--base-directory", str(base), "--user-directory", str(base / "user")]
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"consistory_test:\n    base_path: {base}\n    custom_nodes: custom_nodes\n"
                    f"    checkpoints: models/checkpoints\n")
    return args + ["--extra-model-paths-config", str(yaml)]


def get_json(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post_json(url: str, data: dict, timeout: float = 30):
    request = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.loads(r.read())


PROCESSES: dict = {}  # url -> the server's process, while it runs (tests stop one on purpose)


def _start(base: Path, archive: bool = False):
    """(process, url, log file) of a server started on a free loopback port (archive: see
    prepare_base; the repository is then not on the server's sys.path either)."""
    port = free_port()
    log = open(base / "server.log", "w")
    command = [sys.executable, "-m", "consistory_testing.serve", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--disable-auto-launch"] + prepare_base(base, archive)
    process = subprocess.Popen(command, cwd=PACK_DIR, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "CONSISTORY_SERVE_BARE": "1" if archive else ""})
    url = f"http://127.0.0.1:{port}"
    PROCESSES[url] = process
    return process, url, log


def _wait_ready(process, url: str, base: Path, start_timeout: float) -> None:
    deadline = time.monotonic() + start_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped at start:\n{(base / 'server.log').read_text()[-4000:]}")
        try:
            get_json(url + "/system_stats", timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no server after {start_timeout} s:\n{(base / 'server.log').read_text()[-4000:]}")
            time.sleep(1)


def _stop(process, url: str, log) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    PROCESSES.pop(url, None)


@contextlib.contextmanager
def running_servers(bases: list, start_timeout: float = 300, archive: bool = False):
    """Yields the URLs of one server per base folder, started together; all are stopped on
    exit, whatever happened."""
    started = []
    try:
        for base in bases:
            started.append((*_start(base, archive), base))
        for process, url, _, base in started:
            _wait_ready(process, url, base, start_timeout)
        yield [url for _, url, _, _ in started]
    finally:
        for process, url, log, _ in started:
            _stop(process, url, log)


@contextlib.contextmanager
def running_server(base: Path, start_timeout: float = 180, archive: bool = False):
    """Yields the server's URL; the server is stopped on exit, whatever happened. archive: the
    pack as a Registry archive installs it, alone (prepare_base)."""
    with running_servers([base], start_timeout, archive) as (url,):
        yield url
