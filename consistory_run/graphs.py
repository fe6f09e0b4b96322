"""API-format story graphs built from stock nodes plus the pack's, for tests and the CLI."""
SCENES = ["walking in a park", "reading a book", "cooking dinner"]


def story_graph(scenes=SCENES, *, sdsa=True, end_percent=1.0, anchors=0, seed=1, steps=6,
                width=128, height=96, subject="an old man with a hat", words="man, hat",
                key="story", cfg=5.0, record_chunks=False, batch_size=None, ckpt=None,
                sampler="euler", scheduler="normal", dropout=0.5, style="a photo of", negative="blurry",
                blend=False, blend_end=0.1, inject=None, alpha=0.8, loader=None, mask_resolution=None):
    """The story graph; ``ckpt`` names a checkpoint for the stock loader, ``loader`` is any
    MODEL/CLIP/VAE loader node (e.g. the story world's), else the tiny model.

    blend: add ConsiStory Query Blend. inject: None, "fast" (one pass) or "exact" (a first
    sampler, Collect Features, then a second sampler with the same seed that injects;
    "sampler" is then the second one and "pass1" the first).
    """
    loader = loader or ({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}} if ckpt else
                        {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 0}})
    g = {
        "ckpt": loader,
        "story": {"class_type": "ConsiStoryStoryPrompts", "inputs": {
            "clip": ["ckpt", 1], "subject": subject, "subject_words": words,
            "scenes": "\n".join(scenes), "style_prefix": style}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": negative}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {
            "width": width, "height": height,
            "batch_size": batch_size if batch_size is not None else ["story", 2]}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["sdsa", 0] if sdsa else ["ckpt", 0], "positive": ["story", 0],
            "negative": ["neg", 0], "latent_image": ["latent", 0], "seed": seed, "steps": steps,
            "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0}},
        "capture": {"class_type": "ConsiStoryLatentCapture", "inputs": {
            "samples": ["sampler", 0], "key": key}},
    }
    if sdsa:
        g["sdsa"] = {"class_type": "ConsiStorySDSA", "inputs": {
            "model": ["ckpt", 0], "subject": ["story", 1], "dropout": dropout, "dropout_seed": 0,
            "anchors": anchors, "start_percent": 0.0, "end_percent": end_percent,
            "blocks": "output (paper)"}}
    if sdsa and mask_resolution:  # ConsiStory Subject Masks with another resolution than the paper's
        g["mask_settings"] = {"class_type": "ConsiStorySubjectMasks", "inputs": {
            "window": 20, "resolution": mask_resolution, "threshold_scale": 1.0}}
        g["sdsa"]["inputs"]["mask_settings"] = ["mask_settings", 0]
    if sdsa and blend:
        g["blend"] = {"class_type": "ConsiStoryQueryBlend", "inputs": {
            "model": ["sdsa", 0], "start_strength": 0.9, "end_strength": 0.81836735, "end_percent": blend_end}}
        g["sampler"]["inputs"]["model"] = ["blend", 0]
    if sdsa and inject:
        shared = g["sampler"]["inputs"]["model"]
        g["inject"] = {"class_type": "ConsiStoryFeatureInjection", "inputs": {
            "model": shared, "alpha": alpha, "start_percent": 0.1, "end_percent": 0.33,
            "dift_timestep": 261, "dift_noise_seed": 0}}
        if inject == "exact":
            g["pass1"] = {"class_type": "KSampler", "inputs": dict(g["sampler"]["inputs"])}
            g["collect"] = {"class_type": "ConsiStoryCollectFeatures", "inputs": {
                "model": shared, "samples": ["pass1", 0]}}
            g["inject"]["inputs"]["features"] = ["collect", 0]
            g["pass1_capture"] = {"class_type": "ConsiStoryLatentCapture", "inputs": {
                "samples": ["pass1", 0], "key": key + "_pass1"}}
        g["sampler"]["inputs"]["model"] = ["inject", 0]
    if record_chunks:  # on the loaded model, so every pass of the pack's wrappers is counted
        g["chunks"] = {"class_type": "ConsiStoryChunkRecorder", "inputs": {"model": ["ckpt", 0]}}
        for node in g.values():
            if node["inputs"].get("model") == ["ckpt", 0] and node is not g["chunks"]:
                node["inputs"]["model"] = ["chunks", 0]
    return g


def with_preview(g):
    """Adds VAE decode + mask preview (+ preview image) after the sampler."""
    g = dict(g)
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}}
    g["masks"] = {"class_type": "ConsiStoryMaskPreview", "inputs": {
        "model": ["sdsa", 0], "images": ["decode", 0], "opacity": 0.5, "samples": ["sampler", 0]}}
    g["show"] = {"class_type": "PreviewImage", "inputs": {"images": ["masks", 1]}}
    return g


def with_saved_images(g, prefix="story"):
    """Adds decode, mask preview and SaveImage nodes for the images and the mask overlays."""
    g = with_preview(g)
    del g["show"]
    g["save_images"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    g["save_masks"] = {"class_type": "SaveImage", "inputs": {"images": ["masks", 1], "filename_prefix": prefix + "_masks"}}
    return g


def with_plain_branch(g, prefix="plain"):
    """Adds plain sampling beside the story: a second sampler with the same prompts, latent, seed
    and settings on the loader's own model (no ConsiStory), decoded and saved as ``prefix``."""
    g = dict(g)
    g["plain_sampler"] = {"class_type": "KSampler", "inputs": dict(g["sampler"]["inputs"], model=["ckpt", 0])}
    g["plain_decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["plain_sampler", 0], "vae": ["ckpt", 2]}}
    g["save_plain"] = {"class_type": "SaveImage", "inputs": {"images": ["plain_decode", 0], "filename_prefix": prefix}}
    return g


def make_subject_graph(scenes, anchors=2, prefix="subject", **kw):
    """Anchors only: sample them with SDSA (anchors = k), then Anchor Bank -> Save Anchor Bank."""
    g = story_graph(scenes, anchors=anchors, **kw)
    g["bank"] = {"class_type": "ConsiStoryAnchorBank", "inputs": {
        "model": g["sampler"]["inputs"]["model"], "samples": ["sampler", 0]}}
    g["save_bank"] = {"class_type": "ConsiStorySaveAnchorBank", "inputs": {"bank": ["bank", 0], "filename_prefix": prefix}}
    return g


def reuse_subject_graph(scenes, bank_name, share_new=False, anchor_cache=None, cache_budget_gb=None, **kw):
    """New scenes with a saved subject: Load Anchor Bank -> Use Anchors, and Bank Latent for the
    new images' latent (the bank's size; each new image gets the noise it would have had in
    one batch after the anchors). anchor_cache, cache_budget_gb: Use Anchors' choices (None:
    its defaults)."""
    g = story_graph(scenes, **kw)
    g["load_bank"] = {"class_type": "ConsiStoryLoadAnchorBank", "inputs": {"bank_name": bank_name}}
    g["sdsa"] = {"class_type": "ConsiStoryUseAnchors", "inputs": {
        "model": g["sdsa"]["inputs"]["model"], "bank": ["load_bank", 0], "subject": ["story", 1],
        "share_new": share_new, **({"anchor_cache": anchor_cache} if anchor_cache else {}),
        **({"cache_budget_gb": cache_budget_gb} if cache_budget_gb is not None else {})}}
    g["latent"] = {"class_type": "ConsiStoryBankLatent", "inputs": {"bank": ["load_bank", 0], "subject": ["story", 1]}}
    return g


def with_paper_extras(g):
    """What the paper's pipeline adds around the method: FreeU (b1 1.1, b2 1.2, s1 0.6, s2 0.4)
    by up block, as the reference applies it (ConsiStory FreeU), on the loaded model and an
    empty negative made of zeros (ConditioningZeroOut)."""
    g = dict(g)
    g["freeu"] = {"class_type": "ConsiStoryFreeU", "inputs": {"model": ["ckpt", 0], "b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4}}
    g["neg"] = {**g["neg"], "inputs": {**g["neg"]["inputs"], "text": ""}}
    g["zero_neg"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["neg", 0]}}
    for name, node in g.items():
        if name in ("freeu", "zero_neg"):
            continue
        for key, value in node["inputs"].items():
            if value == ["ckpt", 0]:
                node["inputs"] = {**node["inputs"], key: ["freeu", 0]}
            elif value == ["neg", 0]:
                node["inputs"] = {**node["inputs"], key: ["zero_neg", 0]}
    return g


def with_controlnet(g, control_net=None, image=None, strength=1.0):
    """Stock ControlNetApplyAdvanced on the story's conditioning. control_net: a file name for
    the stock ControlNetLoader (else the tiny test ControlNet); image: a file for LoadImage
    (else a grey EmptyImage of the latent's size)."""
    g = dict(g)
    w, h = g["latent"]["inputs"]["width"], g["latent"]["inputs"]["height"]
    g["cn"] = ({"class_type": "ControlNetLoader", "inputs": {"control_net_name": control_net}} if control_net else
               {"class_type": "ConsiStoryTinyControlNet", "inputs": {"weight_seed": 0}})
    g["hint"] = ({"class_type": "LoadImage", "inputs": {"image": image}} if image else
                 {"class_type": "EmptyImage", "inputs": {"width": w, "height": h, "batch_size": 1, "color": 8421504}})
    g["apply"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["story", 0], "negative": ["neg", 0], "control_net": ["cn", 0], "image": ["hint", 0],
        "strength": strength, "start_percent": 0.0, "end_percent": 1.0}}
    for name in ("sampler", "pass1"):
        if name in g:
            g[name]["inputs"].update(positive=["apply", 0], negative=["apply", 1])
    return g


FLUX_FILES = {"unet": "flux1-dev.safetensors", "clip_l": "clip_l.safetensors", "t5": "t5xxl_fp16.safetensors",
              "vae": "ae.safetensors"}


def with_flux_loaders(g, files=FLUX_FILES, guidance=3.5):
    """The story graph ``g`` (made with any MODEL/CLIP/VAE loader as "ckpt") with Flux.1's stock
    loaders (UNETLoader, DualCLIPLoader type flux, VAELoader), FluxGuidance on the story's
    conditioning and Flux's empty latent (EmptySD3LatentImage, 16 channels)."""
    g = {name: {**node, "inputs": dict(node["inputs"])} for name, node in g.items() if name != "ckpt"}
    g["unet"] = {"class_type": "UNETLoader", "inputs": {"unet_name": files["unet"], "weight_dtype": "default"}}
    g["clip"] = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": files["clip_l"], "clip_name2": files["t5"],
                                                            "type": "flux"}}
    g["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}}
    outputs = {0: ["unet", 0], 1: ["clip", 0], 2: ["vae", 0]}
    for node in g.values():
        for key, value in node["inputs"].items():
            if isinstance(value, list) and value[:1] == ["ckpt"]:
                node["inputs"][key] = outputs[value[1]]
    g["guidance"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["story", 0], "guidance": guidance}}
    for node in g.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["positive"] = ["guidance", 0]
    g["latent"] = {**g["latent"], "class_type": "EmptySD3LatentImage"}
    return g


def subject_from_image_node(image, *, captions="", seed=0, steps=6, width=128, height=96,
                            subject="an old man with a hat", words="man, hat", cfg=5.0, sampler="euler",
                            scheduler="normal", negative="blurry", style="a photo of", mask=None, dropout=0.5, **_):
    """ConsiStory Subject From Image on the IMAGE ``image`` (and MASK ``mask``: node outputs,
    e.g. ["photo", 0]), with story_graph's settings (the others are ignored)."""
    node = {"class_type": "ConsiStorySubjectFromImage", "inputs": {
        "model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "image": image,
        "subject": subject, "subject_words": words, "captions": captions, "style_prefix": style,
        "negative": negative, "width": width, "height": height, "sampler_name": sampler,
        "scheduler": scheduler, "steps": steps, "cfg": cfg, "seed": seed, "dropout": dropout}}
    if mask is not None:
        node["inputs"]["mask"] = mask
    return node


def photo_bank_graph(photos=1, *, prefix="photo", loader=None, image=None, mask=None, **kw):
    """A subject from photos: ConsiStory Subject From Image -> Save Anchor Bank. image: an IMAGE
    node (default: a grey EmptyImage of the size, ``photos`` of them); mask: a MASK node or None."""
    width, height = kw.get("width", 128), kw.get("height", 96)
    g = {
        "ckpt": loader or {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 0}},
        "photo": image or {"class_type": "EmptyImage", "inputs": {"width": width, "height": height,
                                                                   "batch_size": photos, "color": 8421504}},
        "bank": subject_from_image_node(["photo", 0], mask=None if mask is None else ["mask", 0], **kw),
        "save_bank": {"class_type": "ConsiStorySaveAnchorBank", "inputs": {"bank": ["bank", 0], "filename_prefix": prefix}},
    }
    if mask is not None:
        g["mask"] = mask
    return g


def photo_subject_graph(scenes, image, *, captions="", mask=None, prefix="photo_subject", **kw):
    """New scenes with the subject of photos, in one graph: Subject From Image -> Use Anchors and
    Bank Latent (the bank also saved under ``prefix``). image / mask: IMAGE / MASK node outputs."""
    g = reuse_subject_graph(scenes, "unused", **kw)
    g["load_bank"] = subject_from_image_node(image, captions=captions, mask=mask, **kw)
    g["save_bank"] = {"class_type": "ConsiStorySaveAnchorBank", "inputs": {"bank": ["load_bank", 0],
                                                                          "filename_prefix": prefix}}
    return g
