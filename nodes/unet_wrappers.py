"""UNet function wrappers that chain the one already on a model, and extra passes.

``set_model_unet_function_wrapper`` holds one wrapper: ours call the previous one (or
``apply_model``) so several packs' wrappers keep working. An extra pass (vanilla queries,
DIFT features) is the same call with a copied ``c`` whose transformer_options carry a phase.
"""
from __future__ import annotations

from .story_run import PHASE_KEY, RUN_KEY


def chained(model_options: dict):
    """A function (apply_model, args) -> output that runs the wrapper already there, if any."""
    previous = model_options.get("model_function_wrapper")
    if previous is None:
        return lambda apply_model, args: apply_model(args["input"], args["timestep"], **args["c"])
    return previous


def story_run(model, node: str):
    run = model.model_options.get("transformer_options", {}).get(RUN_KEY)
    if run is None:
        raise ValueError(f"{node}: connect a model patched by ConsiStory SDSA")
    return run


def phase_of(args) -> str | None:
    return args["c"].get("transformer_options", {}).get(PHASE_KEY)


def with_options(args: dict, **options) -> dict:
    """A copy of the wrapper args whose transformer_options also hold ``options``."""
    c = dict(args["c"])
    c["transformer_options"] = {**c.get("transformer_options", {}), **options}
    return {**args, "c": c}
