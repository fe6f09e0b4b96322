"""A synthetic story world where subject consistency is measurable, and a small SDXL-shaped
model trained on it (the issue "Does it work? A story world with a model trained here").

world (what an image shows, prompts), render (drawing), reader (reading generated images
back), latent_map (fixed image <-> latent map), vae (it as a host VAE), model (host SDXL
UNet + frozen tiny text encoder; text_encoder builds it), train, sampling, preview,
measure (consistency, alignment, diversity, mask IoU). The ComfyUI loader node is the pack's
nodes/story_world_checkpoint.py.
"""
