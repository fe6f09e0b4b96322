"""comfyui-consistory: training-free consistent subjects for SDXL (and SD 1.5, SD 2.x, Flux.1) in ComfyUI
(ConsiStory, Tewel et al., ACM TOG 2024)."""
from .nodes import comfy_entrypoint
from .sample_inputs import place_samples_on_host
from .server_routes import register_on_host

register_on_host()  # POST /consistory/banks, where ComfyUI runs its server
place_samples_on_host()  # the example workflows' sample images into ComfyUI's input folder, where it runs its server

__all__ = ["comfy_entrypoint"]
