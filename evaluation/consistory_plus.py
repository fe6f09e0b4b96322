"""The ConsiStory+ prompt sets (1Prompt1Story, ICLR 2025; MIT; ``consistory_plus/``) as this
pack's prompt sets: per subject, its style prefix, subject, subject words and scenes.

Each image's prompt is ``style subject scene``, as 1Prompt1Story's benchmark builds its
identity prompt (style + subject) and frame prompts. The subject words are the words of the
benchmark's concept token as the subject writes them ("a crusty loaf of freshly baked bread":
loaf, bread; "macaron" is "macarons" in "a colorful array of delicate macarons").
"""
from __future__ import annotations

import re
from pathlib import Path

STOP = {"a", "an", "the", "of", "and", "with", "in", "on", "for", "to"}
YAML = Path(__file__).resolve().parent / "consistory_plus" / "consistory+.yaml"


def subject_words(concept: str, subject: str) -> str:
    named = re.findall(r"[a-z]+", subject.lower())
    words = []
    for w in concept.lower().split():  # the subject's own form of the word ("macarons" for "macaron")
        found = next((n for n in named if n == w), None) or next((n for n in named if n.startswith(w)), None)
        if found and w not in STOP and found not in words:
            words.append(found)
    if not words:
        raise ValueError(f"the concept {concept!r} names no word of the subject {subject!r}")
    return ", ".join(words)


def prompt_sets(path: Path = YAML) -> list[dict]:
    """[{"name": "animals_0", "style", "subject", "words", "scenes": [...]}, ...] in file order."""
    import yaml
    data = yaml.safe_load(Path(path).read_text())
    return [{"name": f"{domain}_{i}", "style": item["style"], "subject": item["subject"],
             "words": subject_words(item["concept_token"], item["subject"]), "scenes": list(item["settings"])}
            for domain, items in data.items() for i, item in enumerate(items)]
