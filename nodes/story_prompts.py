"""ConsiStory Story Prompts: one prompt per scene, all sharing the subject; the subject
words' token positions in every prompt (paper §4.1, "subject tokens")."""
from __future__ import annotations

import math
import re

import torch

from ..consistory_core import SubjectWordMissing, repeated_positions, subject_positions
from ..consistory_patches.values import StorySubject
from .sockets import STORY, Subject, io, schema

START, END = 49406, 49407
ARTICLES = {"a", "an", "the", "his", "her", "its", "their", "some", "one", "two", "three"}
LINKS = {"with", "of", "in", "on", "and", "at", "to", "for", "by", "from", "wearing", "holding", "carrying",
         "under", "behind", "near", "who", "that", "is", "as"}


def default_words(subject: str) -> list[str]:
    """Subject words when none are given: the head noun of each noun phrase, i.e. the last
    word before each linking word ("an old man with a hat" -> man, hat; "a small ginger cat"
    -> cat), as the paper's subject tokens are the nouns that name the subject."""
    words = [w for w in re.findall(r"[\w'-]+", subject.lower()) if w not in ARTICLES]
    heads, phrase = [], []
    for w in words + ["with"]:
        if w in LINKS:
            if phrase:
                heads.append(phrase[-1])
            phrase = []
        else:
            phrase.append(w)
    return list(dict.fromkeys(heads))


def split_words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def story_prompt(style: str, subjects: list[str], scene: str) -> str:
    """One image's prompt: ``style subject(s) scene``."""
    return " ".join(x for x in (style.strip(), " and ".join(subjects), scene) if x)


# The tokens whose encoding the model attends to, by the host's tokenize() key, most wanted
# first: T5's for Flux ({"l", "t5xxl"}: CLIP-L only gives Flux its pooled vector), else CLIP's
# ("l" for SD 1.5 and SDXL, whose "g" has the same ids; "h" for SD 2.x); and their end token.
CONTEXT_KEYS = ("t5xxl", "l", "h")
END_OF = {"t5xxl": 1}  # CLIP's: END
BLANK_OF = {"t5xxl": 3}  # T5's lone word-start piece ("▁"), which carries no meaning of its own


def context_key(tokens: dict) -> str:
    """The tokenize() key of the tokens the model's context is made of."""
    return next((key for key in CONTEXT_KEYS if key in tokens), next(iter(tokens)))


def token_ids(tokens: dict) -> list[int]:
    """The token ids of a prompt's context, all chunks in a row, from the host's tokenize()
    output: {"l": ...} for SD 1.5, {"g", "l"} for SDXL (the same ids), {"h": ...} for SD 2.x,
    {"l", "t5xxl"} for Flux (the T5 ids)."""
    return [t[0] for chunk in tokens[context_key(tokens)] for t in chunk]


def word_pieces(clip, word: str) -> list[int]:
    """Token ids of a word or short phrase in the context's tokenizer, without start/end tokens."""
    tokens = clip.tokenize(word)
    key = context_key(tokens)
    ids, end = token_ids(tokens), END_OF.get(key, END)
    ids = ids[1:] if ids and ids[0] == START else ids
    ids = ids[:ids.index(end)] if end in ids else ids
    return ids[1:] if len(ids) > 1 and ids[0] == BLANK_OF.get(key) else ids


def encode_story(clip, subject: str, subject_words: str, scene_list: list[str], style_prefix: str,
                 node: str) -> tuple:
    """(conditioning with one row per scene, StorySubject): the prompts ``style subject(s)
    scene`` encoded, and the subject words' token positions in each; ``node`` names the
    asker in errors."""
    subjects = [s.strip() for s in subject.splitlines() if s.strip()]
    if not subjects:
        raise ValueError(f"{node}: the subject is empty")
    word_lines = [l for l in subject_words.splitlines() if l.strip()]
    if word_lines and len(word_lines) != len(subjects):
        raise ValueError(f"{node}: {len(subjects)} subject(s) but "
                         f"{len(word_lines)} line(s) of subject words; give one line per subject")
    words = [split_words(l) for l in word_lines] or [default_words(s) for s in subjects]
    for s, w in zip(subjects, words):
        if not w:
            raise ValueError(f"{node}: no subject words for {s!r}")
    flat_words = [w for ws in words for w in ws]
    word_subject = tuple(i for i, ws in enumerate(words) for _ in ws)
    pieces = {w: word_pieces(clip, w) for w in flat_words}
    for w, p in pieces.items():
        if not p:
            raise ValueError(f"{node}: the subject word {w!r} has no tokens")

    prompts = [story_prompt(style_prefix, subjects, scene) for scene in scene_list]
    conds, pooled, positions, lengths = [], [], [], []
    for prompt in prompts:
        tokens = clip.tokenize(prompt)
        ids = token_ids(tokens)
        try:
            found = subject_positions(ids, pieces, prompt)
        except SubjectWordMissing as e:
            raise ValueError(f"{node}: {e}") from None
        cond, pool = clip.encode_from_tokens(tokens, return_pooled=True)
        conds.append(cond)
        pooled.append(pool)
        positions.append([found[w] for w in flat_words])
        lengths.append(cond.shape[1])
    length = math.lcm(*lengths)
    conds = [c.repeat(1, length // c.shape[1], 1) for c in conds]  # as the host pads
    positions = tuple(tuple(tuple(repeated_positions(p, n, length)) for p in words_pos)
                      for words_pos, n in zip(positions, lengths))
    story = StorySubject(prompts=tuple(prompts),
                         subjects=tuple((s, tuple(w)) for s, w in zip(subjects, words)),
                         positions=positions, word_subject=word_subject, token_length=length)
    return [[torch.cat(conds), {"pooled_output": torch.cat(pooled)}]], story


class StoryPrompts(io.ComfyNode):
    """Encodes a story: ``style subject scene`` for each scene, one image each."""

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryStoryPrompts", display_name="ConsiStory Story Prompts", category=STORY,
            description="Builds one prompt per scene around a shared subject and finds the subject words in each.",
            search_aliases=["consistent character prompts", "story", "scenes"],
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder(s) from the checkpoint loader (SDXL, SD 1.5 or SD "
                              "2.x), or Flux's (DualCLIPLoader type flux: the subject words are found in the T5 "
                              "tokens)."),
                io.String.Input("subject", multiline=True, default="an old man with a hat", tooltip=
                                "The subject every image shows, e.g. 'an old man with a hat'. "
                                "Several subjects: one per line."),
                io.String.Input("subject_words", multiline=True, default="", tooltip=
                                "Comma-separated words whose attention marks the subject "
                                "(e.g. 'man, hat'). Empty: the nouns that head the subject's phrases "
                                "('an old man with a hat' -> man, hat). "
                                "Several subjects: one line per subject."),
                io.String.Input("scenes", multiline=True, default=
                                "walking in a park\nreading a book in a library\n"
                                "cooking in a kitchen\nsitting on a bench by the sea",
                                tooltip="One scene per line; each becomes one image of the batch."),
                io.String.Input("style_prefix", default="a photo of", tooltip=
                                "Text put before the subject in every prompt."),
            ],
            outputs=[
                io.Conditioning.Output("conditioning", display_name="conditioning",
                                       tooltip="One conditioning per scene (batch = number of scenes)."),
                Subject.Output("story_subject", display_name="subject",
                               tooltip="Subject token positions per prompt, for the ConsiStory SDSA node."),
                io.Int.Output("batch_size", display_name="batch_size",
                              tooltip="Number of scenes: the latent batch size to use."),
            ])

    @classmethod
    def execute(cls, clip, subject, subject_words, scenes, style_prefix):
        scene_list = [s.strip() for s in scenes.splitlines() if s.strip()]
        if not scene_list:
            raise ValueError("ConsiStory Story Prompts: give at least one scene (one per line)")
        conditioning, story = encode_story(clip, subject, subject_words, scene_list, style_prefix,
                                           "ConsiStory Story Prompts")
        return io.NodeOutput(conditioning, story, story.images)
