"""Headless runs of the pack on a real ComfyUI host: host bootstrap, tiny models, CLI."""
