"""API-format story graphs built from stock nodes plus the pack's, for tests and the CLI."""
SCENES = ["walking in a park", "reading a book", "cooking dinner"]


def story_graph(scenes=SCENES, *, sdsa=True, end_percent=1.0, anchors=0, seed=1, steps=6,
                width=128, height=96, subject="an old man with a hat", words="man, hat",
                key="story", cfg=5.0, record_chunks=False, batch_size=None, ckpt=None,
                sampler="euler", scheduler="normal", dropout=0.5, style="a photo of", negative="blurry"):
    """The story graph; ``ckpt`` names a checkpoint for the stock loader, else the tiny model."""
    loader = ({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}} if ckpt else
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
    if record_chunks:
        g["chunks"] = {"class_type": "ConsiStoryChunkRecorder", "inputs": {"model": g["sampler"]["inputs"]["model"]}}
        g["sampler"]["inputs"]["model"] = ["chunks", 0]
    return g


def with_preview(g):
    """Adds VAE decode + mask preview (+ preview image) after the sampler."""
    g = dict(g)
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}}
    g["masks"] = {"class_type": "ConsiStoryMaskPreview", "inputs": {
        "model": ["sdsa", 0], "images": ["decode", 0], "opacity": 0.5}}
    g["show"] = {"class_type": "PreviewImage", "inputs": {"images": ["masks", 1]}}
    return g


def with_saved_images(g, prefix="story"):
    """Adds decode, mask preview and SaveImage nodes for the images and the mask overlays."""
    g = with_preview(g)
    del g["show"]
    g["save_images"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    g["save_masks"] = {"class_type": "SaveImage", "inputs": {"images": ["masks", 1], "filename_prefix": prefix + "_masks"}}
    return g
