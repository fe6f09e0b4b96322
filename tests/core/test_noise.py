"""consistory_core.noise: where an image's initial noise depends on the batch around it."""
import pytest
import torch

from consistory_core.noise import noise_is_batch_independent


@pytest.mark.parametrize("shape,independent", [
    ((4, 7, 9), False),      # 72x56 px: 252 values an image
    ((4, 125, 125), False),  # 1000x1000 px
    ((4, 8, 9), True), ((4, 128, 128), True), ((4, 96, 128), True),
    ((16, 125, 125), True),  # Flux's 16 channels: always a multiple of 16
])
def test_noise_depends_on_the_batch_unless_an_image_holds_a_multiple_of_16_values(shape, independent):
    assert noise_is_batch_independent(shape) is independent


def test_the_check_is_what_the_host_draws():
    """What the host's prepare_noise does from torch.manual_seed(seed) (a generator seeded so):
    one randn of the batch, or one randn per numbered image."""
    shape = (4, 7, 9)
    batch = torch.randn((3, *shape), generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    numbered = torch.cat([torch.randn((1, *shape), generator=gen) for _ in range(3)])
    assert not torch.equal(batch[2], numbered[2])
