"""The runtime of comfyui-consistory: the patches on the host's ModelPatcher API.

Bottom to top: ``run_state`` (the story, share map, step clock and masks of one patched
model), ``passes`` (which pass a UNet call is) and ``chunks`` (its row layout), then one
module per concern: ``mask_recorder`` (attn2 patch), ``shared_attention`` (attn1 replace),
``dift_capture`` (output block patch), ``injection`` (attn1 output patch + one-pass
stage), ``blend_pass``, ``anchor_record``, ``anchor_replay`` (wrapper stages), and
``story`` (the parts of one clone, the patching, and the one UNet wrapper). ``host_api``
is the only module that knows how the 2024 host and today's differ. The method itself is
in consistory_core; the nodes in nodes/ only declare inputs and call this package.
See docs/ARCHITECTURE.md.
"""
