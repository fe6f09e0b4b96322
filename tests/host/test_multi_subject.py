"""Several subjects at once (paper §4.5) on the real host: every subject's words are found in
every prompt, masks are kept per subject and shared as their union."""
import pytest
import torch

from consistory_run.graphs import story_graph, with_preview
from consistory_testing.pack import run_node

SUBJECTS = "an old man with a hat\na small cat"
WORDS = "man, hat\ncat"


def test_every_subjects_tokens_are_found_in_every_prompt(host):
    from consistory_testing.tiny_models import tiny_sdxl_clip
    prompts = host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryStoryPrompts"]
    clip = tiny_sdxl_clip()
    cond, story, n = run_node(prompts, clip, SUBJECTS, WORDS, "in a park\nat the beach\nin a kitchen", "a photo of")
    assert n == 3 and cond[0][0].shape[0] == 3
    assert story.subjects == (("an old man with a hat", ("man", "hat")), ("a small cat", ("cat",)))
    assert story.word_subject == (0, 0, 1)
    vocab = clip.tokenizer.clip_l.tokenizer.get_vocab()
    for prompt, words in zip(story.prompts, story.positions):
        ids = [t[0] for chunk in clip.tokenize(prompt)["l"] for t in chunk]
        for word, positions in zip(("man", "hat", "cat"), words):
            assert positions and all(ids[p] == vocab[word + "</w>"] for p in positions), (prompt, word)


def test_a_subject_word_missing_from_the_prompts_is_a_clear_error(host):
    from consistory_run.host import GraphError
    with pytest.raises(GraphError, match=r"'dog' does not occur in the prompt 'a photo of an old man with a hat "
                                         r"and a small cat in a park'"):
        host.run(story_graph(["in a park", "at the beach"], subject=SUBJECTS, words="man, hat\ndog"))
    with pytest.raises(GraphError, match=r"2 subject\(s\) but 1 line\(s\) of subject words"):
        host.run(story_graph(["in a park"], subject=SUBJECTS, words="man, hat, cat"))


def test_masks_per_subject_and_their_union(host, latents):
    g = with_preview(story_graph(["in a park", "at the beach", "in a kitchen"], subject=SUBJECTS, words=WORDS,
                                 width=128, height=128))
    g["mask_capture"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "mask"}}
    g["overlay_capture"] = {"class_type": "ConsiStoryImageCapture", "inputs": {"image": ["masks", 1], "key": "overlay"}}
    g["image_capture"] = {"class_type": "ConsiStoryImageCapture", "inputs": {"image": ["decode", 0], "key": "image"}}
    host.run(g)
    mask, overlay, image = latents["mask"], latents["overlay"], latents["image"]
    assert mask.shape == (3, 128, 128)
    # where the union mask is off the overlay is the image; where it is on, it is tinted
    off = mask == 0
    assert torch.allclose(overlay[off], image[off])
    assert not torch.allclose(overlay[~off], image[~off])
    # two subjects -> two tint colours (red for the first, blue for the second) under the mask
    tinted = overlay[~off] - 0.5 * image[~off]
    colours = {tuple(round(v, 1) for v in (c * 2).tolist()) for c in tinted}
    assert {(1.0, 0.2, 0.2), (0.2, 0.5, 1.0)} <= colours, colours


@pytest.mark.parametrize("subject,words", [
    ("an old man with a hat", ["man", "hat"]), ("a small ginger cat", ["cat"]), ("a red fox", ["fox"]),
    ("a young woman with red hair", ["woman", "hair"]), ("a dog and a cat", ["dog", "cat"]),
    ("a knight in shining armor holding a sword", ["knight", "armor", "sword"])])
def test_default_subject_words_are_the_head_nouns(host, subject, words):
    from consistory_testing.pack import pack_module
    assert pack_module(host.nodes.NODE_CLASS_MAPPINGS, "nodes.story_prompts").default_words(subject) == words


def test_empty_subject_words_find_the_nouns_in_every_prompt(host, latents):
    host.run(story_graph(["in a park", "at the beach"], subject="a red fox", words=""))
    assert torch.isfinite(latents["story"]).all()
