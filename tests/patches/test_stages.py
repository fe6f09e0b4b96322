"""The wrapper stages and patches with fake UNet calls: which passes they run, what rows
and conditioning reach the UNet, what they record."""
import pytest
import torch

from consistory_testing.pack import runtime

engagement = runtime("consistory_patches.engagement")
passes = runtime("consistory_patches.passes")
blend_pass = runtime("consistory_patches.blend_pass")
anchor_replay = runtime("consistory_patches.anchor_replay")
anchor_cache = runtime("consistory_patches.anchor_cache")
anchor_record = runtime("consistory_patches.anchor_record")
shared_attention = runtime("consistory_patches.shared_attention")
run_state = runtime("consistory_patches.run_state")
values = runtime("consistory_patches.values")
settings = runtime("consistory_core.settings")
bank_file = runtime("consistory_core.bank_file")
WHOLE = runtime("consistory_patches.windows").Window(0.0, 1.0, 10.0, 0.0)  # sharing at every sigma 10..0


class Sampling:
    """A linear schedule: percent p <-> sigma 10 * (1 - p)."""

    def percent_to_sigma(self, p):
        return 10.0 * (1 - p)


class SharingRun:
    """A StoryRun stand-in whose sharing is on above sigma 2."""
    replayed = 0

    def sync(self, sigmas):
        self.sigma = float(sigmas[0])
        return self.sigma

    def sharing_at(self, sigma):
        return sigma > 2

    def position(self):  # as on the 2024 host: no schedule, sigma thresholds
        return None


def args_for(x, sigma, order, **c):
    options = {"cond_or_uncond": list(order), "sigmas": torch.full((x.shape[0],), sigma)}
    return {"input": x, "timestep": torch.full((x.shape[0],), sigma), "c": {**c, "transformer_options": options},
            "cond_or_uncond": list(order)}


def logging_unet(log):
    def call(args):
        log.append((passes.args_pass(args), args))
        return args["input"] * 2
    return call


def test_query_blend_runs_a_vanilla_pass_then_the_blended_sampler_pass_while_in_range():
    stage = blend_pass.QueryBlendPass(SharingRun(), settings.BlendSettings(0.9, 0.5, 0.5), Sampling())
    log = []
    out = stage(logging_unet(log), args_for(torch.ones(2, 1), 10.0, [0]))
    assert [p.kind for p, _ in log] == [passes.PassKind.VANILLA, passes.PassKind.SAMPLER]
    assert log[0][0].queries is log[1][0].queries and abs(log[1][0].blend - 0.9) < 1e-6
    assert torch.equal(out, torch.full((2, 1), 2.0))
    log.clear()
    stage(logging_unet(log), args_for(torch.ones(2, 1), 7.5, [0]))  # a quarter of the way: half way to 0.5
    assert abs(log[1][0].blend - 0.7) < 1e-6
    log.clear()
    stage(logging_unet(log), args_for(torch.ones(2, 1), 4.0, [0]))  # past end_percent: one plain call
    assert [p for p, _ in log] == [passes.SAMPLER_PASS]


def test_query_blend_leaves_other_passes_alone():
    stage = blend_pass.QueryBlendPass(SharingRun(), settings.BlendSettings(), Sampling())
    log = []
    dift = passes.with_pass(args_for(torch.ones(2, 1), 10.0, [0]), passes.Pass(passes.PassKind.DIFT, noise_seed=1))
    stage(logging_unet(log), dift)
    assert [p.kind for p, _ in log] == [passes.PassKind.DIFT]


def test_a_vanilla_pass_keeps_its_queries_and_the_sampler_pass_blends_them():
    subject = values.StorySubject(prompts=("a", "b"), subjects=(("x", ("x",)),), positions=(((1,),),) * 2,
                                  word_subject=(0,), token_length=77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool), WHOLE)
    seen = []
    previous = lambda q, k, v, extra: seen.append(q) or q
    attention = shared_attention.SharedAttention(run)
    engaged = engagement.Engagement()
    extra = {"block": ("output", 1), "block_index": 0, "sigmas": torch.full((2,), 5.0), "n_heads": 1,
             "original_shape": [2, 4, 8, 8], "cond_or_uncond": [0], engagement.ENGAGED_KEY: engaged}
    queries = {}
    q = torch.ones(2, 16, 4)
    attention.attend(q, q, q, {**extra, passes.PASS_KEY: passes.Pass(passes.PassKind.VANILLA, queries=queries)},
                     previous)
    assert queries[("output", 1, 0)] is q
    blended = passes.Pass(queries=queries, blend=0.5)
    out = attention.attend(torch.zeros(2, 16, 4), q, q, {**extra, passes.PASS_KEY: blended}, previous)
    assert torch.allclose(out, torch.full((2, 16, 4), 0.5))  # no masks yet: no sharing, blended q only
    assert (engaged.named, engaged.blended) == (2, 1)  # both passes went through the patch, one blended


def small_bank(k=2, steps=3, length=77):
    g = torch.Generator().manual_seed(0)
    description = bank_file.BankDescription(prompts=("p",) * k, subjects=(("x", ("x",)),), positions=(((1,),),) * k,
                                            word_subject=(0,), token_length=length)
    cond = {name: {"context": torch.randn(k, length, 3, generator=g), "y": torch.randn(k, 5, generator=g)}
            for name in ("cond", "uncond")}
    return bank_file.AnchorBank(torch.tensor([9.0, 5.0, 1.0], dtype=torch.float64)[:steps],
                                torch.randn(steps, k, 4, 2, 2, generator=g), cond, description)


def test_replay_with_a_cache_runs_the_new_images_alone_and_records_the_anchors_alone_first():
    """An evaluation not kept yet: a call on the anchors alone (their inputs and conditioning
    per chunk, a recording access) keeps their parts, then the new images run alone with a
    playing access, as in every later run: later runs make only that second call. The new
    images' output is the second call's."""
    bank = small_bank()
    cache = anchor_cache.AnchorCache(bank.anchors)
    cache.use("same settings")  # start_run sets it from the story; no story in these fake calls
    stage = anchor_replay.AnchorReplay(bank, cache)
    x = torch.randn(6, 4, 2, 2)
    context, y = torch.randn(6, 154, 3), torch.randn(6, 5)
    log = []
    for sigma in (9.0, 5.0, 1.0):
        out = stage(logging_unet(log), args_for(x, sigma, [1, 0], c_crossattn=context, y=y))
        assert torch.equal(out, x * 2)
    assert [seen["input"].shape[0] for _, seen in log] == [4, 6] * 3
    accesses = [passes.pass_of(seen["c"]["transformer_options"]).anchor_rows for _, seen in log]
    assert [a.recording for a in accesses] == [True, False] * 3
    alone = log[0][1]
    assert torch.equal(alone["input"], torch.cat([bank.inputs[0]] * 2))  # uncond, cond: the anchors' inputs
    assert torch.equal(alone["c"]["c_crossattn"][:2], bank.conditioning["uncond"]["context"].repeat(1, 2, 1))
    assert torch.equal(alone["c"]["y"][2:], bank.conditioning["cond"]["y"])
    log.clear()
    for sigma in (9.0, 5.0, 1.0):
        out = stage(logging_unet(log), args_for(x, sigma, [1, 0], c_crossattn=context, y=y))
        assert torch.equal(out, x * 2)
    assert [seen["input"].shape[0] for _, seen in log] == [6, 6, 6]
    rows = passes.pass_of(log[-1][1]["c"]["transformer_options"]).anchor_rows
    assert not rows.recording and rows.absent == 2 and rows.evaluation == 2
    assert torch.equal(log[-1][1]["c"]["c_crossattn"], context)
    assert cache.calls == {"recorded": 3, "played": 6}


def test_replay_puts_the_banks_anchors_in_front_of_each_chunk_and_drops_them_after():
    bank = small_bank()
    stage = anchor_replay.AnchorReplay(bank)
    x = torch.randn(6, 4, 2, 2)  # uncond then cond, 3 new images each
    context, y = torch.randn(6, 154, 3), torch.randn(6, 5)
    log = []
    stage(logging_unet(log), args_for(x, 9.0, [1, 0], c_crossattn=context, y=y))  # a run starts at the bank's first sigma
    out = stage(logging_unet(log), args_for(x, 5.0, [1, 0], c_crossattn=context, y=y))
    assert torch.equal(out, x * 2)
    _, seen = log[-1]
    assert seen["input"].shape == (10, 4, 2, 2) and torch.equal(seen["timestep"], torch.full((10,), 5.0))
    assert torch.equal(seen["input"][:2], bank.inputs[1]) and torch.equal(seen["input"][5:7], bank.inputs[1])
    assert torch.equal(seen["input"][2:5], x[:3]) and torch.equal(seen["input"][7:], x[3:])
    # the anchors' 77-token context is repeated to the new prompts' 154 tokens, per chunk
    assert torch.equal(seen["c"]["c_crossattn"][:2], bank.conditioning["uncond"]["context"].repeat(1, 2, 1))
    assert torch.equal(seen["c"]["c_crossattn"][5:7], bank.conditioning["cond"]["context"].repeat(1, 2, 1))
    assert torch.equal(seen["c"]["y"][7:], y[3:])
    assert stage.last_x0[0] == 1 and torch.equal(stage.last_x0[1], bank.inputs[1] * 2)  # the cond chunk's anchors at evaluation 1, for a DIFT pass
    with pytest.raises(bank_file.BankError, match="model evaluation 2 is at sigma 1; the bank's is at sigma 5"):
        stage(logging_unet(log), args_for(x, 1.0, [1, 0], c_crossattn=context, y=y))  # fine: the next sigma
        stage(logging_unet(log), args_for(x, 9.0, [1, 0], c_crossattn=context, y=y))  # a new run from the top
        stage(logging_unet(log), args_for(x, 1.0, [1, 0], c_crossattn=context, y=y))  # skips 5.0



def test_replay_follows_two_evaluations_at_one_sigma_by_their_inputs():
    """A heun-like bank (9, 5, 5, 1): the correction at 5 and the next step at 5 have other
    inputs; a second call with the same inputs (the other CFG chunk) is the same evaluation."""
    bank = small_bank()
    bank = bank_file.AnchorBank(torch.tensor([9.0, 5.0, 5.0, 1.0], dtype=torch.float64),
                                torch.randn(4, 2, 4, 2, 2), bank.conditioning, bank.description)
    stage = anchor_replay.AnchorReplay(bank)
    x, context, y = torch.randn(6, 4, 2, 2), torch.randn(6, 154, 3), torch.randn(6, 5)
    log = []
    for sigma, shift, evaluation in ((9.0, 0, 0), (5.0, 1, 1), (5.0, 1, 1), (5.0, 2, 2), (1.0, 3, 3)):
        stage(logging_unet(log), args_for(x + shift, sigma, [1, 0], c_crossattn=context, y=y))
        assert torch.equal(log[-1][1]["input"][:2], bank.inputs[evaluation]), (sigma, shift)
    stage(logging_unet(log), args_for(x, 9.0, [1, 0], c_crossattn=context, y=y))  # a new run
    stage(logging_unet(log), args_for(x + 1, 5.0, [1, 0], c_crossattn=context, y=y))
    with pytest.raises(bank_file.BankError, match="model evaluation 3 is at sigma 1; the bank's is at sigma 5"):
        stage(logging_unet(log), args_for(x + 3, 1.0, [1, 0], c_crossattn=context, y=y))  # euler after a heun bank


def test_the_recorder_keeps_the_first_k_rows_of_every_chunk_once_per_evaluation():
    subject = values.StorySubject(prompts=("a", "b", "c"), subjects=(("x", ("x",)),), positions=(((1,),),) * 3,
                                  word_subject=(0,), token_length=77)
    run = run_state.StoryRun(subject, settings.SharingSettings(anchors=2), torch.ones(3, 3, dtype=torch.bool),
                             WHOLE)
    stage = anchor_record.AnchorRecorder(run, 2)
    x, context = torch.randn(6, 4, 2, 2), torch.randn(6, 77, 3)
    stage(logging_unet([]), args_for(x, 9.0, [1, 0], c_crossattn=context))
    stage(logging_unet([]), args_for(x.clone(), 9.0, [1, 0], c_crossattn=context))  # same inputs: kept once
    assert stage.sigmas == [9.0] and torch.equal(stage.inputs[0], x[:2])
    stage(logging_unet([]), args_for(x + 1, 9.0, [1, 0], c_crossattn=context))  # other inputs: a second evaluation
    assert stage.sigmas == [9.0, 9.0] and torch.equal(stage.inputs[1], x[:2] + 1)
    assert torch.equal(stage.conditioning["uncond"]["c_crossattn"], context[:2])
    assert torch.equal(stage.conditioning["cond"]["c_crossattn"], context[3:5])
    bank = stage.bank({"model_family": "SDXL", "context_dim": 3})
    assert bank.description.prompts == ("a", "b") and bank.description.sharing.anchors == 2
    run.sync(torch.full((6,), 9.5))  # a higher sigma: a new run forgets the old anchors
    assert stage.inputs == [] and stage.sigmas == []


def test_dift_features_are_h_after_the_blocks_in_place_patches_as_the_reference_reads_them():
    """FreeU's output block patch scales half of h's channels in place after ours has run (in
    the reference the stored features are a view that FreeU scales): the features are h as the
    DIFT block takes it in, that scaling included; what happens to h after the host has moved
    on to the next block is not in them."""
    dift_capture = runtime("consistory_patches.dift_capture")
    subject = values.StorySubject(prompts=("a", "b"), subjects=(("x", ("x",)),), positions=(((1,),),) * 2,
                                  word_subject=(0,), token_length=77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool), WHOLE)
    capture = dift_capture.DiftCapture(run, dift_block=3, dift_sigma=1.0)
    extra = {"block": ("output", 3), "original_shape": [4, 4, 8, 8], "cond_or_uncond": [1, 0],
             "sigmas": torch.full((4,), 1.2)}
    h = torch.randn(4, 6, 4, 4)
    capture.capture(h, None, extra)
    h[:, :3] *= 1.2  # FreeU's patch of the same block, after ours
    expected = h[2:].clone()
    capture.capture(torch.randn(4, 6, 8, 8), None, {**extra, "block": ("output", 4)})  # the host moved on
    h *= 3
    assert torch.equal(capture.recorded_features()[1], expected)

    dift = {**extra, passes.PASS_KEY: passes.Pass(passes.PassKind.DIFT, noise_seed=0), "cond_or_uncond": [0],
            "original_shape": [2, 4, 8, 8]}
    h_dift = torch.randn(2, 6, 4, 4)
    capture.capture(h_dift, None, dift)
    h_dift[:, :3] *= 1.2
    expected = h_dift.clone()
    capture.settle()  # what the one-pass stage does after the DIFT call
    h_dift *= 3
    assert torch.equal(capture.pass_features, expected)


def test_a_second_sampling_with_the_same_schedule_tensor_is_a_new_run():
    """The host hands the schedule to every UNet call (sample_sigmas); a graph may sample twice
    with one schedule tensor (a node's cached output). Back at its first sigma after later
    steps is a new run: the clock restarts and the masks start afresh."""
    subject = runtime("consistory_patches.values").StorySubject(("a", "b"), (("cat", ("cat",)),),
                                                               (((1,),), ((1,),)), (0,), 77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool), WHOLE)
    schedule = torch.tensor([10.0, 6.0, 3.0, 0.0])
    for sampling in range(2):
        run.follow(schedule)
        for step, sigma in enumerate(schedule[:-1]):
            run.sync(torch.full((2,), float(sigma)))
            assert run.position() == (step, 3) and run.runs == sampling + 1
    run.follow(schedule)
    run.sync(torch.full((2,), 6.0))  # a sampler that rejects a step and goes back up, not to the top
    run.sync(torch.full((2,), 3.0))
    run.sync(torch.full((2,), 6.0))
    assert run.runs == 2


def test_query_blend_strengths_by_default_are_the_references():
    """At 50 steps the reference blends with linspace(0.9, 0.1, 50)[step] at steps 1-5 (its
    linspace(0.9, 0.81836735, 6)); the defaults give those strengths (0.82 would end 1.6e-3 off)."""
    import numpy as np

    class At:
        def __init__(self):
            self.step = 0

        def position(self):
            return self.step, 50

    run = At()
    blend = blend_pass.QueryBlendPass(run, settings.BlendSettings(), Sampling())
    reference = np.linspace(0.9, 0.1, 50)
    for step in range(1, 6):
        run.step = step
        assert abs(blend.strength(0.0) - reference[step]) < 1e-7, step


def test_a_split_schedules_parts_are_joined_and_a_tail_alone_is_a_whole_schedule():
    """A KSamplerAdvanced split: the first part (not ending at 0) has no known length; the
    second, which starts where it stopped, is counted in the two parts joined (steps 2-3 of
    4). The same tail sampled on its own (a denoise below 1, a leading DDIM schedule) is a
    whole schedule of its own (steps 0-1 of 2), and starts a new run."""
    subject = runtime("consistory_patches.values").StorySubject(("a", "b"), (("cat", ("cat",)),),
                                                               (((1,),), ((1,),)), (0,), 77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool), WHOLE)
    first, second = torch.tensor([10.0, 6.0, 3.0]), torch.tensor([3.0, 1.0, 0.0])
    run.follow(first)
    for sigma in first[:-1]:
        run.sync(torch.full((2,), float(sigma)))
        assert run.position() is None
    runs = run.runs
    run.follow(second)
    seen = []
    for sigma in second[:-1]:
        run.sync(torch.full((2,), float(sigma)))
        seen.append(run.position())
    assert seen == [(2, 4), (3, 4)] and run.runs == runs
    assert torch.equal(run.schedule, torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0]))
    run.follow(second.clone())  # the tail again, on its own
    seen = []
    for sigma in second[:-1]:
        run.sync(torch.full((2,), float(sigma)))
        seen.append(run.position())
    assert seen == [(0, 2), (1, 2)] and run.runs == runs + 1


def test_a_first_part_sliced_from_a_whole_schedule_is_counted_in_it():
    """KSamplerAdvanced hands its first part over as a slice of its whole schedule (in the
    host's inference mode): the part is counted in the schedule it was sliced from (steps 0-1
    of 4); a copy of it, or a slice of something that is not a schedule, gives no schedule."""
    subject = runtime("consistory_patches.values").StorySubject(("a", "b"), (("cat", ("cat",)),),
                                                               (((1,),), ((1,),)), (0,), 77)
    with torch.inference_mode():
        whole = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0])
        first = whole[:3]
        assert torch.equal(run_state.enclosing_schedule(first), whole)
        assert run_state.enclosing_schedule(first.clone()) is None
        assert run_state.enclosing_schedule(torch.tensor([10.0, 6.0, 3.0, 7.0, 0.0])[:3]) is None
        run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool), WHOLE)
        run.follow(first)
        seen = []
        for sigma in first[:-1]:
            run.sync(torch.full((2,), float(sigma)))
            seen.append(run.position())
        assert seen == [(0, 4), (1, 4)]
        run.follow(whole[2:])  # the second part joins the first
        run.sync(torch.full((2,), 3.0))
        assert run.position() == (2, 4) and torch.equal(run.schedule, whole)
