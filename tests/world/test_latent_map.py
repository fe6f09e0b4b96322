"""The fixed image <-> latent map and its VAE stand-in."""
import numpy as np
import torch

from story_world import latent_map
from story_world.vae import LatentMapVAE


def test_shapes_and_scale(renders):
    images = np.stack([image for _, image, _ in renders])
    z = latent_map.encode(images)
    assert z.shape == (len(images), 4, 32, 32) and z.dtype == torch.float32
    std = z.std(dim=(0, 2, 3))
    assert (std[:3] > 1.5).all() and (std[:3] < 2.5).all() and 0.5 < std[3] < 1.5


def test_encode_of_decode_is_identity_where_nothing_clamps():
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.2
    torch.testing.assert_close(latent_map.encode(latent_map.decode(z)), z, rtol=0, atol=1e-5)


def test_decode_keeps_patch_colours(renders):
    images = torch.from_numpy(np.stack([image for _, image, _ in renders[:10]]))
    back = latent_map.decode(latent_map.encode(images))
    assert back.shape == images.shape
    means = lambda x: x.reshape(-1, 32, 2, 32, 2, 3).mean(dim=(2, 4))
    assert (means(back) - means(images)).abs().mean() < 0.01


def test_vae_stand_in_uses_the_host_latent_scale(renders):
    images = torch.from_numpy(np.stack([image for _, image, _ in renders[:4]]))
    vae = LatentMapVAE()
    samples = vae.encode(images)
    torch.testing.assert_close(samples * latent_map.HOST_SCALE, latent_map.encode(images))
    torch.testing.assert_close(vae.decode(samples), latent_map.decode(latent_map.encode(images)))
    assert vae.spacial_compression_decode() == 2
