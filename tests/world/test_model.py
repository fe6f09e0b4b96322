"""The story-world model pieces on the real host: the frozen text encoder is reproducible,
and training feeds the UNet exactly what the host's sampler feeds it."""
import pytest
import torch


@pytest.fixture(scope="module")
def host():
    from consistory_run.host import Host
    return Host.start()


def test_text_encoder_is_rebuilt_identically(host):
    from story_world.model import PROBE_PROMPT, TEXT_SEED, build_text_encoder, encode_text
    a = encode_text(build_text_encoder(TEXT_SEED), PROBE_PROMPT)
    b = encode_text(build_text_encoder(TEXT_SEED), PROBE_PROMPT)
    other = encode_text(build_text_encoder(TEXT_SEED + 1), PROBE_PROMPT)
    assert a[0].shape == (1, 77, 64) and a[1].shape == (1, 32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], other[0])


def test_training_input_is_what_apply_model_computes(host):
    from story_world.model import build_sdxl, init_unet, size_conditioning
    from story_world.train import unet_input
    model = build_sdxl()
    init_unet(model.diffusion_model, seed=0)
    with torch.no_grad():
        model.diffusion_model.out[2].weight.normal_(0, 0.1)  # non-zero output
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 32, 32, generator=gen), torch.randn(2, 4, 32, 32, generator=gen)
    context = torch.randn(2, 77, 64, generator=gen)
    y = size_conditioning(model, torch.randn(2, 32, generator=gen))
    assert y.shape == (2, 32 + 6 * 256)
    sigma = model.model_sampling.sigmas[torch.tensor([10, 700])]
    with torch.no_grad():
        x_in, timestep = unet_input(model, x0, eps, sigma)
        eps_pred = model.diffusion_model(x_in, timestep, context=context, y=y)
        noisy = x0 + sigma[:, None, None, None] * eps
        denoised = model.apply_model(noisy, sigma, c_crossattn=context, y=y)
    torch.testing.assert_close(denoised, noisy - sigma[:, None, None, None] * eps_pred)
    assert timestep.tolist() == [10.0, 700.0]
