"""The pack's one UNet wrapper: installed once, chaining what is there, its stages in a
fixed nesting whatever order the nodes were applied in; and the keyed-wrapper host path."""
import dataclasses
import types

import pytest
import torch

from consistory_testing.fakes import FakePatcher, host_call
from consistory_testing.pack import runtime

host_api = runtime("consistory_patches.host_api")
passes = runtime("consistory_patches.passes")
story_module = runtime("consistory_patches.story")


class Stage:
    """A wrapper stage that logs its name on the way in and passes the call on."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __call__(self, call, args):
        self.log.append((self.name, passes.args_pass(args).kind.value))
        return call(args)

    def acts_at(self, sigma):  # as Query Blend's stage is asked after the call: not blending
        return False


class Run:
    """What the wrapper asks of the run state: a look at the schedule, the step's sigma."""
    clock = types.SimpleNamespace(sigma=3.0)

    def follow(self, sample_sigmas):
        pass


def story_with(log, **names):
    """A Story whose wrapper stages are logging Stages (the other parts are not used here)."""
    parts = {field: Stage(field, log) for field in names}
    return story_module.Story(run=Run(), masks=None, attention=None, dift=None, **parts)


def patched(story, m=None):
    m = m or FakePatcher()
    m.model_options["transformer_options"][story_module.STORY_KEY] = story
    host_api.install_unet_wrapper(m, story_module.run_stages)
    return m


def test_stages_nest_in_the_fixed_order_whatever_order_the_nodes_added_them():
    log = []
    story = story_with(log, recorder=1)
    story = dataclasses.replace(story, one_pass=Stage("one_pass", log))  # Feature Injection first...
    story = dataclasses.replace(story, blend=Stage("blend", log))        # ...then Query Blend
    m = patched(story)
    out, calls = host_call(m, torch.ones(4, 1), torch.full((4,), 3.0), [1, 0])
    assert [name for name, _ in log] == ["one_pass", "blend", "recorder"]
    assert {kind for _, kind in log} == {"sampler"}
    assert torch.equal(out, torch.full((4, 1), 2.0)) and len(calls) == 1


def test_a_call_in_which_consistorys_attention_patch_did_not_run_fails_naming_the_cause():
    m = patched(story_with([], recorder=1))
    with pytest.raises(runtime("consistory_patches.engagement").NotEngaged,
                       match="the self-attention patch ConsiStory put on this model was not called"):
        host_call(m, torch.ones(4, 1), torch.full((4,), 3.0), [1, 0], attention_patch=False)
    host_call(m, torch.ones(4, 1), torch.full((4,), 3.0), [1, 0])


def test_the_wrapper_chains_the_one_already_on_the_model_and_is_installed_once():
    log = []
    m = FakePatcher()

    def other_pack(apply_model, args):
        log.append("other pack")
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(other_pack)
    m = patched(story_with(log, blend=1), m)
    host_api.install_unet_wrapper(m, story_module.run_stages)  # a second node: nothing more
    host_call(m, torch.ones(2, 1), torch.full((2,), 3.0), [0])
    assert log == [("blend", "sampler"), "other pack"]


def test_a_second_consistory_wrapper_under_another_packs_runs_no_stage_twice():
    log = []
    m = patched(story_with(log, blend=1))
    inner = m.model_options["model_function_wrapper"]

    def other_pack(apply_model, args):
        log.append("other pack")
        return inner(apply_model, args)

    m.set_model_unet_function_wrapper(other_pack)
    host_api.install_unet_wrapper(m, story_module.run_stages)  # e.g. Use Anchors after the other pack
    host_call(m, torch.ones(2, 1), torch.full((2,), 3.0), [0])
    assert log == [("blend", "sampler"), "other pack"]


def test_a_model_without_a_story_goes_straight_through():
    m = FakePatcher()
    host_api.install_unet_wrapper(m, story_module.run_stages)
    out, calls = host_call(m, torch.ones(2, 1), torch.full((2,), 3.0), [0])
    assert torch.equal(out, torch.full((2, 1), 2.0)) and passes.PASS_KEY not in calls[0][0]


def test_on_a_host_with_keyed_wrappers_it_registers_one_apply_model_wrapper(monkeypatch):
    class WrappersMP:
        APPLY_MODEL = "apply_model"

    class KeyedPatcher(FakePatcher):
        def __init__(self):
            super().__init__()
            self.wrappers = {}

        def add_wrapper_with_key(self, kind, key, fn):
            self.wrappers.setdefault(kind, {}).setdefault(key, []).append(fn)

        def get_wrappers(self, kind, key):
            return self.wrappers.get(kind, {}).get(key, [])

    monkeypatch.setattr(host_api, "_keyed_wrappers", lambda: WrappersMP)
    log = []
    m = KeyedPatcher()
    m.model_options["transformer_options"][story_module.STORY_KEY] = story_with(log, blend=1)
    host_api.install_unet_wrapper(m, story_module.run_stages)
    host_api.install_unet_wrapper(m, story_module.run_stages)
    (fn,) = m.get_wrappers("apply_model", host_api.WRAPPER_KEY)
    assert "model_function_wrapper" not in m.model_options
    seen = []

    def executor(x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kw):
        seen.append((x, t, c_crossattn, passes.pass_of(transformer_options).kind, kw))
        count = runtime("consistory_patches.engagement").count
        count(transformer_options), count(transformer_options, "masks")  # ConsiStory's attention patches ran
        return x * 2

    options = {**m.model_options["transformer_options"], "cond_or_uncond": [1, 0]}
    out = fn(executor, torch.ones(4, 1), torch.full((4,), 3.0), c_crossattn=torch.zeros(4, 7, 2),
             transformer_options=options, y=torch.ones(4, 5))
    assert torch.equal(out, torch.full((4, 1), 2.0)) and log == [("blend", "sampler")]
    (x, t, context, kind, kw) = seen[0]
    assert context.shape == (4, 7, 2) and kind is passes.PassKind.SAMPLER and kw["y"].shape == (4, 5)


def test_a_later_node_puts_the_wrapper_back_when_another_pack_replaced_it():
    log = []
    m = patched(story_with(log))

    def careless_pack(apply_model, args):  # sets the slot without calling what was there
        log.append("careless pack")
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(careless_pack)
    story = m.model_options["transformer_options"][story_module.STORY_KEY]
    m = story_module.with_parts(m, story, blend=Stage("blend", log))  # e.g. Query Blend after that pack
    host_call(m, torch.ones(2, 1), torch.full((2,), 3.0), [0])
    assert log == [("blend", "sampler"), "careless pack"]
