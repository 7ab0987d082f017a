"""What changed between two versions of a notice: a line diff (difflib), refined to words
inside a changed line that keeps most of its words, for the public notice pages.

`notice_diff(old, new)` returns the new text's lines merged with the removed ones, each line a
list of `Segment`s ("equal", "ins" or "del"); the template renders them as <ins>/<del> with a
visually hidden label, so that a screen reader says what was added or removed.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_WORDS = re.compile(r"(\s+)")


@dataclass(frozen=True)
class Segment:
    kind: str  # "equal", "ins" or "del"
    text: str


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _word_diff(old: str, new: str) -> list[Segment]:
    old_words, new_words = _WORDS.split(old), _WORDS.split(new)
    segments: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            segments.append(Segment("equal", "".join(old_words[i1:i2])))
            continue
        if i2 > i1:
            segments.append(Segment("del", "".join(old_words[i1:i2])))
        if j2 > j1:
            segments.append(Segment("ins", "".join(new_words[j1:j2])))
    return [segment for segment in segments if segment.text]


def _similar(old: str, new: str) -> bool:
    """Worth a word diff: the lines share most of their words (else one removed, one added
    reads better than words of two different texts interleaved)."""
    return difflib.SequenceMatcher(None, old.split(), new.split(), autojunk=False).ratio() >= 0.5


def notice_diff(old: str, new: str) -> list[list[Segment]]:
    """The lines of `new` with those of `old` it no longer has; [] when nothing changed."""
    old_lines, new_lines = _lines(old), _lines(new)
    if old_lines == new_lines:
        return []
    result: list[list[Segment]] = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            result.extend([Segment("equal", line)] for line in new_lines[j1:j2])
        elif (
            tag == "replace"
            and i2 - i1 == j2 - j1
            and all(_similar(a, b) for a, b in zip(old_lines[i1:i2], new_lines[j1:j2], strict=True))
        ):
            result.extend(_word_diff(a, b) for a, b in zip(old_lines[i1:i2], new_lines[j1:j2], strict=True))
        else:
            result.extend([Segment("del", line)] for line in old_lines[i1:i2])
            result.extend([Segment("ins", line)] for line in new_lines[j1:j2])
    return result
