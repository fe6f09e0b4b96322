"""The pack as the host loaded it: its modules live under the host's name for the folder
(e.g. ``comfyui-consistory.consistory_patches.values``), not under this repo's imports."""
from __future__ import annotations

import sys


def pack_module(classes: dict, name: str):
    """The loaded pack's module ``name`` (e.g. "consistory_patches.blend_pass"), found
    through the node classes the host registered."""
    root = classes["ConsiStorySDSA"].__module__.split(".")[0]
    return sys.modules[f"{root}.{name}"]


def synthetic_story(classes: dict, n: int):
    """A StorySubject of n prompts with the subject words at fixed token positions (5, 8),
    for benchmarks that feed the UNet without a text encoder."""
    values = pack_module(classes, "consistory_patches.values")
    return values.StorySubject(prompts=tuple(f"scene {i}" for i in range(n)),
                               subjects=(("a man with a hat", ("man", "hat")),),
                               positions=tuple(((5,), (8,)) for _ in range(n)), word_subject=(0, 0),
                               token_length=77)


def import_runtime(alias: str = "consistory_pack"):
    """The repository as a package named ``alias`` without running its ``__init__`` (which
    registers the nodes and needs a host), so ``alias.consistory_patches`` imports with its
    relative imports intact and no host: for the fast runtime tests."""
    import types
    from pathlib import Path
    if alias not in sys.modules:
        package = types.ModuleType(alias)
        package.__path__ = [str(Path(__file__).resolve().parents[1])]
        sys.modules[alias] = package
    return sys.modules[alias]


def runtime(name: str):
    """Module ``name`` of the repository imported as ``consistory_pack`` (see import_runtime),
    e.g. runtime("consistory_patches.passes")."""
    import importlib
    import_runtime()
    return importlib.import_module(f"consistory_pack.{name}")


def run_node(node_class, *inputs, **named) -> tuple:
    """A pack node's outputs for its inputs, as the host's executor gets them: the values of
    the NodeOutput its V3 ``execute`` returns."""
    return tuple(node_class.execute(*inputs, **named).args)
