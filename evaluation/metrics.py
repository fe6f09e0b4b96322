"""The paper's two measures (§5): prompt alignment and subject consistency.

- Prompt alignment: CLIP score, the cosine between the CLIP embeddings of an image and of
  its scene prompt (x100), mean over a set's images.
- Subject consistency: mean pairwise cosine between the embeddings (DINOv2, or CLIP-I) of
  the images' subject regions: the image with everything outside the pack's subject mask
  replaced by grey, cropped to the mask's bounding box.

The ConsiStory+ benchmark's three (1Prompt1Story, ICLR 2025, Table 1), on images whose
background is removed (here with the pack's own subject masks; the paper used CarveKit):
- CLIP-T: 2.5 x the CLIP cosine of each image with its prompt (CLIPScore's scale, which
  puts SDXL near 0.9 as in that table; its scoring code is not published);
- CLIP-I: mean pairwise CLIP image cosine of a set's subjects;
- DreamSim: mean pairwise DreamSim distance of a set's subjects (lower: more alike).

Images are (N, H, W, 3) floats in [0, 1] (ComfyUI's IMAGE); masks (N, H, W).
Models are loaded with transformers' ``from_pretrained`` from a name or a folder; the
preprocessing (resize, centre crop, normalise) is done here in torch. DreamSim comes from
its own package (``pip install dreamsim``), or any ``module:factory`` giving an object
with ``embed(pixels (N, 3, 224, 224) in [0, 1]) -> (N, D)`` (the tests' stand-in).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocess(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(N, H, W, 3) in [0, 1] -> (N, 3, size, size): shorter side to ``size``, centre crop, normalise."""
    x = images.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                      align_corners=False).clamp(0, 1)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def subject_region(images: torch.Tensor, masks: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    """Images with the background greyed out, each cropped to its mask's bounding box
    (squared, so the subject keeps its aspect). An empty mask keeps the whole image."""
    out = []
    for image, mask in zip(images, masks):
        m = mask > 0.5
        kept = torch.where(m[..., None], image, torch.full_like(image, grey))
        if m.any():
            rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
            top, bottom, left, right = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
            side = max(bottom - top, right - left)
            cy, cx = (top + bottom) // 2, (left + right) // 2
            h, w = m.shape
            top, left = max(0, min(h - side, cy - side // 2)), max(0, min(w - side, cx - side // 2))
            kept = kept[top:top + min(side, h), left:left + min(side, w)]
        out.append(F.interpolate(kept.permute(2, 0, 1)[None], size=images.shape[1:3], mode="bilinear",
                                 align_corners=False)[0].permute(1, 2, 0))
    return torch.stack(out)


def remove_background(images: torch.Tensor, masks: torch.Tensor, fill: float = 1.0) -> torch.Tensor:
    """Images with everything outside the subject mask set to ``fill`` (white, as a
    background remover leaves it); an empty mask keeps the whole image."""
    keep = (masks > 0.5)[..., None]
    keep = keep | ~keep.flatten(1).any(1)[:, None, None, None]
    return torch.where(keep, images, torch.full_like(images, fill))


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """(N, D) -> mean cosine over all pairs i < j."""
    e = F.normalize(embeddings.float(), dim=-1)
    pairs = list(itertools.combinations(range(e.shape[0]), 2))
    return float(torch.stack([e[i] @ e[j] for i, j in pairs]).mean()) if pairs else float("nan")


def load_dreamsim(spec: str, device="cpu"):
    """"dreamsim": the DreamSim package's pretrained model (downloads its weights once);
    "module:factory": ``factory(device)`` (a stand-in with the same ``embed``)."""
    if spec == "dreamsim":
        from dreamsim import dreamsim
        model, _ = dreamsim(pretrained=True, device=device)
        return model
    import importlib
    module, _, factory = spec.partition(":")
    return getattr(importlib.import_module(module), factory)(device)


@dataclass
class Scorers:
    """CLIP for text-image scores and CLIP-I; DINOv2 (optional) for subject consistency;
    DreamSim (optional) for the ConsiStory+ table."""
    clip: object
    tokenizer: object
    dino: object = None
    dreamsim: object = None

    @classmethod
    def load(cls, clip_name: str, dino_name: str | None = None, device="cpu", dreamsim: str | None = None) -> "Scorers":
        from transformers import AutoModel, CLIPModel, CLIPTokenizer
        clip = CLIPModel.from_pretrained(clip_name).to(device).eval()
        tokenizer = CLIPTokenizer.from_pretrained(clip_name)
        dino = AutoModel.from_pretrained(dino_name).to(device).eval() if dino_name else None
        return cls(clip, tokenizer, dino, load_dreamsim(dreamsim, device) if dreamsim else None)

    @property
    def device(self):
        return next(self.clip.parameters()).device

    @torch.no_grad()
    def clip_image(self, images: torch.Tensor) -> torch.Tensor:
        size = self.clip.config.vision_config.image_size
        pixels = preprocess(images, size, CLIP_MEAN, CLIP_STD).to(self.device)
        return _tensor(self.clip.get_image_features(pixel_values=pixels))

    @torch.no_grad()
    def clip_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt",
                                max_length=self.clip.config.text_config.max_position_embeddings)
        return _tensor(self.clip.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                   attention_mask=tokens["attention_mask"].to(self.device)))

    def clip_score(self, images: torch.Tensor, prompts: list[str]) -> float:
        """Mean CLIP score (100 x cosine) of each image with its prompt."""
        return float(100 * self.text_image_cosines(images, prompts).clamp_min(0).mean())

    @torch.no_grad()
    def dino_image(self, images: torch.Tensor) -> torch.Tensor:
        size = min(getattr(self.dino.config, "image_size", 224), 224)  # DINOv2 is evaluated at 224
        out = self.dino(pixel_values=preprocess(images, size, IMAGENET_MEAN, IMAGENET_STD).to(self.device))
        return out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state[:, 0]

    def consistency(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        """Subject consistency of one set: {"clip_i": ..., "dino": ...} on the subject regions."""
        regions = subject_region(images, masks)
        out = {"clip_i": mean_pairwise_cosine(self.clip_image(regions))}
        if self.dino is not None:
            out["dino"] = mean_pairwise_cosine(self.dino_image(regions))
        return out


    def text_image_cosines(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (F.normalize(self.clip_image(images), dim=-1) * F.normalize(self.clip_text(prompts), dim=-1)).sum(-1)

    @torch.no_grad()
    def benchmark(self, images: torch.Tensor, masks: torch.Tensor, prompts: list[str]) -> dict:
        """The ConsiStory+ measures of one set (see the module docstring): clip_t, clip_i_bg
        and, with DreamSim loaded, dreamsim."""
        subjects = remove_background(images, masks)
        out = {"clip_t": float(2.5 * self.text_image_cosines(images, prompts).clamp_min(0).mean()),
               "clip_i_bg": mean_pairwise_cosine(self.clip_image(subjects))}
        if self.dreamsim is not None:
            pixels = F.interpolate(subjects.permute(0, 3, 1, 2).float(), size=(224, 224), mode="bicubic",
                                   align_corners=False).clamp(0, 1).to(self.device)
            out["dreamsim"] = 1 - mean_pairwise_cosine(self.dreamsim.embed(pixels))
        return out


def _tensor(features):
    """transformers 5 may return a model output where older versions return a tensor."""
    return features if torch.is_tensor(features) else features.pooler_output
