"""benchmarks/flux_cost.py's whole-run estimate from measured step costs (no host needed)."""
import pytest

from benchmarks.flux_cost import generation_ratio


def test_a_run_of_plain_steps_costs_one_extra_step_for_the_dift_call():
    plain = dict(vanilla=1.0, sdsa=1.0, **{"sdsa+blend": 1.0, "sdsa+inject": 1.0})
    assert generation_ratio(plain, steps=28) == pytest.approx(29 / 28)


def test_blend_and_injection_steps_are_counted_in_the_papers_windows():
    # 28 steps: blend at steps 1-2 (10%, step 0 has no masks), injection at 2-9 (10-33%)
    costs = dict(vanilla=1.0, sdsa=1.0, **{"sdsa+blend": 3.0, "sdsa+inject": 1.5})
    assert generation_ratio(costs, steps=28) == pytest.approx((29 + 2 * 2 + 8 * 0.5) / 28)
