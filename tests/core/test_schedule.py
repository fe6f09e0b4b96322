"""Tests for consistory_core.schedule (step counting from sigmas)."""
from consistory_core.schedule import StepClock, StepEvent

S, N, R = StepEvent.SAME_STEP, StepEvent.NEW_STEP, StepEvent.NEW_RUN


def run(sigmas):
    """Feed sigmas to a fresh clock; return [(event, step)] after each call."""
    clock = StepClock()
    out = []
    for s in sigmas:
        out.append((clock.observe(s), clock.step))
    return out


def test_initial_state():
    """A fresh clock has seen nothing."""
    c = StepClock()
    assert c.sigma is None and c.step == -1


def test_decreasing_sigmas_count_steps():
    """First call starts a run at step 0; each lower sigma is the next step."""
    sig = [14.6, 9.1, 5.2, 2.0, 0.7, 0.03]
    assert run(sig) == [(R, 0)] + [(N, i) for i in range(1, 6)]


def test_equal_sigma_is_same_step():
    """Split cond/uncond calls and Heun-style second evaluations at one sigma stay in the step."""
    # cond/uncond split: two calls per sigma
    assert run([10.0, 10.0, 5.0, 5.0, 1.0, 1.0]) == [
        (R, 0), (S, 0), (N, 1), (S, 1), (N, 2), (S, 2)]
    # Heun: eval at s_i, then at s_{i+1} (correction), then s_{i+1} again as next step's first eval
    assert run([10.0, 5.0, 5.0, 2.0, 2.0, 1.0]) == [
        (R, 0), (N, 1), (S, 1), (N, 2), (S, 2), (N, 3)]


def test_higher_sigma_starts_new_run():
    """A sigma above the last one starts a new run from step 0 and counting resumes."""
    assert run([10.0, 5.0, 1.0, 10.0, 5.0, 5.0, 7.0, 3.0]) == [
        (R, 0), (N, 1), (N, 2), (R, 0), (N, 1), (S, 1), (R, 0), (N, 1)]


def test_two_samplers_continue_one_schedule():
    """KSamplerAdvanced 0-3 then 3-6 on one schedule: the second keeps counting (3, 4, 5)."""
    sched = [14.6, 9.1, 5.2, 2.0, 0.7, 0.03]
    clock = StepClock()
    first = [(clock.observe(s), clock.step) for s in sched[:3] for _ in range(2)]
    second = [(clock.observe(s), clock.step) for s in sched[3:] for _ in range(2)]
    assert first == [(R, 0), (S, 0), (N, 1), (S, 1), (N, 2), (S, 2)]
    assert second == [(N, 3), (S, 3), (N, 4), (S, 4), (N, 5), (S, 5)]
    assert clock.sigma == 0.03
