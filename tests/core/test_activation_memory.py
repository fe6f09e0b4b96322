"""LiveTensorBytes (benchmarks/activation_memory.py) counts known allocations exactly."""
import torch

from benchmarks.activation_memory import LiveTensorBytes

MIB = 2**20
FLOATS = MIB // 4  # fp32 elements in 1 MiB


def test_a_kept_tensor_and_a_freed_temporary():
    with LiveTensorBytes() as mem:
        kept = torch.ones(FLOATS)
        temporary = torch.ones(4 * FLOATS)
        del temporary
        assert mem.current == MIB
    assert (mem.peak, mem.current) == (5 * MIB, MIB)
    del kept
    assert mem.current == 0


def test_views_and_in_place_results_of_a_kept_tensor_count_once():
    with LiveTensorBytes() as mem:
        kept = torch.zeros(FLOATS)
        views = [kept[::2], kept.view(2, -1), kept.t(), kept.unsqueeze(0)[0], *kept.chunk(4)]
        same = kept.add_(1).mul_(2)
        assert same is kept
    assert (mem.peak, mem.current) == (MIB, MIB)
    del kept, same
    assert mem.current == MIB  # the views still hold the storage
    del views
    assert mem.current == 0


def test_tensors_made_before_the_block_count_zero():
    weight = torch.zeros(FLOATS)
    with LiveTensorBytes() as mem:
        weight.add_(1)
        weight[:10].fill_(3)
        row = weight.view(4, -1)[0]
    assert (mem.peak, mem.current) == (0, 0)
    assert row.untyped_storage().data_ptr() == weight.untyped_storage().data_ptr()


def test_the_peak_is_reached_inside_a_computation():
    weight = torch.ones(FLOATS)
    with LiveTensorBytes() as mem:
        total = (weight * 2).sum()  # 1 MiB temporary alive while the 4-byte sum is made
    assert (mem.peak, mem.current) == (MIB + 4, 4)
    assert total.item() == 2 * FLOATS


def test_tensors_from_python_data_are_counted():
    with LiveTensorBytes() as mem:
        made = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert (mem.peak, mem.current) == (32, 32)
    assert made.sum() == 10


def test_cuda_peak_is_recorded_only_with_cuda():
    with LiveTensorBytes() as mem:
        torch.ones(8)
    assert (mem.cuda_peak is None) == (not torch.cuda.is_available())
