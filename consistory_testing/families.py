"""The model families SDXL users run, as tiny models in API graphs: the loader and the stock
sampling node a real graph would have, and the sampler settings that family uses."""
from __future__ import annotations

# family -> (loader node or None for the tiny SDXL, stock sampling node or None, story_graph kwargs)
FAMILIES = {
    "sdxl": (None, None, {}),  # epsilon: SDXL base, Pony, Illustrious
    "sdxl-vpred-zsnr": (None, {"class_type": "ModelSamplingDiscrete",  # NoobAI-XL v-pred
                               "inputs": {"sampling": "v_prediction", "zsnr": True}}, {}),
    "sdxl-edm-cosxl": (None, {"class_type": "ModelSamplingContinuousEDM",
                              "inputs": {"sampling": "v_prediction", "sigma_max": 120.0, "sigma_min": 0.002}},
                       {"scheduler": "karras"}),
    "sdxl-edm-playground": (None, {"class_type": "ModelSamplingContinuousEDM",
                                   "inputs": {"sampling": "edm_playground_v2.5", "sigma_max": 80.0,
                                              "sigma_min": 0.002}}, {"scheduler": "karras"}),
    "sdxl-few-step": (None, None, {"steps": 4, "cfg": 1.0, "scheduler": "sgm_uniform"}),  # Turbo / Lightning
    "sd15": ({"class_type": "ConsiStoryTinySD1Checkpoint", "inputs": {"weight_seed": 0, "version": "1.5"}},
             None, {}),
    "sd2": ({"class_type": "ConsiStoryTinySD1Checkpoint", "inputs": {"weight_seed": 0, "version": "2.x"}},
            None, {}),
}


def family_kwargs(family: str) -> dict:
    """story_graph keyword arguments of a family (steps, cfg, scheduler)."""
    return dict(FAMILIES[family][2])


def for_family(graph: dict, family: str) -> dict:
    """``graph`` (built for the tiny SDXL with story_graph & co.) with the family's loader, and
    its sampling node between the loader's MODEL and every node that took it."""
    loader, sampling, _ = FAMILIES[family]
    g = {name: {**node, "inputs": dict(node["inputs"])} for name, node in graph.items()}
    if loader is not None:
        g["ckpt"] = {**loader, "inputs": dict(loader["inputs"])}
    if sampling is not None:
        for node in g.values():
            for key, value in node["inputs"].items():
                if value == ["ckpt", 0]:
                    node["inputs"][key] = ["sampling", 0]
        g["sampling"] = {"class_type": sampling["class_type"], "inputs": {"model": ["ckpt", 0], **sampling["inputs"]}}
    return g
