"""The runner's time estimate, said after a sampler's second step when the run is long."""
from consistory_run.estimate import LONG, StepEstimate


def run_steps(estimate, times, total):
    clock = iter(times)
    estimate.clock = lambda: next(clock)
    for value in range(1, len(times) + 1):
        estimate(value, total, None, node_id="3")


def test_a_long_run_is_estimated_once_from_the_second_step():
    said = []
    estimate = StepEstimate(more_steps=50, say=lambda text, flush: said.append(text), hint=" (hint)")
    run_steps(estimate, [100.0, 190.0, 280.0, 370.0], total=50)  # 90 s a step, 48 + 50 steps to go
    assert said == ["      a step takes 90 s here: about 147 min to go (hint)"]


def test_a_short_run_says_nothing():
    said = []
    estimate = StepEstimate(say=lambda text, flush: said.append(text))
    step = LONG / 100
    run_steps(estimate, [0.0, step, 2 * step], total=20)  # 18 steps left: 0.18 * LONG
    assert said == []


def test_the_note_is_said_at_the_first_step_once_and_not_before():
    """The CPU note for a full-size checkpoint waits for sampling: a run that fails while its
    models load never says it."""
    said = []
    estimate = StepEstimate(more_steps=20, say=lambda text, flush: said.append(text), note="note: long")
    assert said == []
    run_steps(estimate, [0.0, 1.0], total=20)
    run_steps(estimate, [2.0, 3.0], total=20)  # the plain run's sampler
    assert said == ["note: long"]
