"""The pass protocol and the row layout of UNet calls, on plain dicts and tensors."""
import pytest
import torch

from consistory_testing.pack import runtime

passes = runtime("consistory_patches.passes")
chunks_module = runtime("consistory_patches.chunks")
Chunks = chunks_module.Chunks


def test_a_call_without_a_pass_is_the_samplers_own():
    assert passes.pass_of({}).is_sampler
    assert passes.pass_of({"sigmas": torch.ones(2)}) is passes.SAMPLER_PASS


def test_with_pass_copies_the_options_and_leaves_the_callers_args_alone():
    options = {"cond_or_uncond": [1, 0], "sigmas": torch.ones(4)}
    args = {"input": torch.zeros(4, 1), "timestep": torch.ones(4), "c": {"transformer_options": options},
            "cond_or_uncond": [1, 0]}
    vanilla = passes.Pass(passes.PassKind.VANILLA, queries={})
    out = passes.with_pass(args, vanilla, cond_or_uncond=[0])
    assert passes.args_pass(out) is vanilla and out["c"]["transformer_options"]["cond_or_uncond"] == [0]
    assert passes.args_pass(args).is_sampler and options == {"cond_or_uncond": [1, 0], "sigmas": options["sigmas"]}
    assert out["input"] is args["input"]


def test_a_blended_pass_mixes_the_vanilla_queries_of_the_same_layer_only():
    q_vanilla, q = torch.full((2, 3, 4), 10.0), torch.zeros(2, 3, 4)
    p = passes.Pass(queries={("output", 0, 0): q_vanilla}, blend=0.9)
    assert torch.allclose(p.blended(("output", 0, 0), q), torch.full((2, 3, 4), 9.0))
    assert p.blended(("output", 1, 0), q) is q  # no vanilla query of that layer
    assert passes.SAMPLER_PASS.blended(("output", 0, 0), q) is q


def test_passes_survive_a_deepcopy_as_the_same_object():
    import copy
    p = passes.Pass(passes.PassKind.DIFT, noise_seed=3)
    assert copy.deepcopy({"k": p})["k"] is p


@pytest.mark.parametrize("order,cond", [([1, 0], 1), ([0, 1], 0), ([0], 0), ([1], None)])
def test_chunks_find_the_cond_rows(order, cond):
    c = Chunks.of(3 * len(order), order)
    assert c.images == 3 and c.cond == cond
    assert c.cond_rows == (None if cond is None else slice(3 * cond, 3 * cond + 3))
    assert [c.rows(i) for i in range(len(c))] == [slice(3 * i, 3 * i + 3) for i in range(len(order))]


def test_anchors_go_in_front_of_each_chunk_and_come_out_again():
    x = torch.arange(6.0).reshape(6, 1)  # uncond rows 0-2, cond rows 3-5
    outer = Chunks.of(6, [1, 0])
    inner = outer.with_anchors(2)
    assert (inner.images, inner.anchors, inner.cond) == (5, 2, 1)
    joined = inner.join(lambda c: torch.full((2, 1), -1.0 - c), x)
    assert joined.flatten().tolist() == [-1, -1, 0, 1, 2, -2, -2, 3, 4, 5]
    assert torch.equal(inner.drop_anchors(joined), x)
    assert joined[inner.head(inner.cond, 2)].flatten().tolist() == [-2, -2]


def test_the_run_checks_the_batch_against_the_story_inside_and_outside_the_wrapper():
    run_state = runtime("consistory_patches.run_state")
    values = runtime("consistory_patches.values")
    settings = runtime("consistory_core.settings")
    WHOLE = runtime("consistory_patches.windows").Window(0.0, 1.0, 10.0, 0.0)
    subject = values.StorySubject(prompts=("a", "b", "c", "d", "e"), subjects=(("x", ("x",)),),
                                  positions=(((1,),),) * 5, word_subject=(0,), token_length=77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(5, 5, dtype=torch.bool), WHOLE,
                             replayed=2)
    assert run.chunks(10, [1, 0]).anchors == 2            # inside: 2 anchors + 3 images per chunk
    assert run.chunks(6, [1, 0], outer=True).images == 3  # as the sampler calls: the 3 new images
    with pytest.raises(ValueError, match="latent batch has 2 images but the story has 3 prompts"):
        run.chunks(8, [1, 0])
    with pytest.raises(ValueError, match="latent batch has 4 images but the story has 3 prompts"):
        run.chunks(4, [0], outer=True)


def test_the_run_that_made_a_latent_is_the_one_whose_last_output_it_equals():
    run_state = runtime("consistory_patches.run_state")
    values = runtime("consistory_patches.values")
    settings = runtime("consistory_core.settings")
    windows = runtime("consistory_patches.windows")
    subject = values.StorySubject(prompts=("a", "b"), subjects=(("x", ("x",)),), positions=(((1,),),) * 2,
                                  word_subject=(0,), token_length=77)
    run = run_state.StoryRun(subject, settings.SharingSettings(), torch.ones(2, 2, dtype=torch.bool),
                             windows.Window(0.0, 1.0, 10.0, 0.0))
    first, second = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert run.run_of(first) == 0  # nothing recorded: the latest run
    for sigma, output in ((9.0, first), (1.0, first), (9.0, second)):  # run 1 ends at `first`, run 2 at `second`
        run.sync(torch.full((2,), sigma))
        run.note_output(output)
    assert run.runs == 2 and run.run_of(first) == 1 and run.run_of(second) == 2
    assert run.run_of(first + 1.0) == 2  # matches no run: the latest
    run.sync(torch.full((2,), 9.5))      # run 3 starts and has no output yet
    assert run.run_of(first) == 1 and run.run_of(torch.randn(1, 4, 8, 8)) == 3
