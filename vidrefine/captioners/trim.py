"""A captioner's answer made into one stage-II caption: one paragraph, at most 226 T5 tokens.

Stage II reads exactly 226 T5 tokens (flashvideo-spec §7) and drops the rest, which would cut a
caption mid-word; vidrefine trims it at the last sentence (else word) boundary that fits, counting
tokens with the T5 tokenizer of the T5 folder the run uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from vidrefine.errors import MissingWeights, first_line

T5_TOKENS = 226  # the caption length stage II reads (vidrefine.models.text.TEXT_LENGTH)
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|#+)\s+")  # "- ", "* ", "1. ", "## "
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def one_paragraph(text: str) -> str:
    """The answer as one paragraph: list marks, headings, emphasis and control characters gone,
    lines joined.
    """
    lines = [_LIST_MARK.sub("", line) for line in text.splitlines()]
    joined = " ".join(lines).replace("**", "")
    printable = "".join(c for c in joined if unicodedata.category(c) != "Cc" or c.isspace())
    return " ".join(printable.split())


def trim_to_tokens(text: str, count: Callable[[str], int], limit: int = T5_TOKENS) -> str:
    """The longest prefix of `text` ending at a sentence boundary with `count(prefix) <= limit`,
    else the longest ending at a word boundary (else a character: one endless "word");
    `text` itself when it fits.

    `count` returns a text's token count including the closing </s>.
    """
    if count(text) <= limit:
        return text
    sentences = _SENTENCE_END.split(text)
    for parts, joiner in ((sentences, " "), (text.split(), " "), (list(text), "")):
        fitting = _longest_fit(parts, count, limit, joiner)
        if fitting:
            return fitting
    return ""


def _longest_fit(parts: list[str], count: Callable[[str], int], limit: int, joiner: str) -> str:
    """The most leading `parts`, joined by `joiner`, that fit in `limit` tokens (binary search:
    the count grows with the number of parts).
    """
    low, high = 0, len(parts)  # parts[:low] fits; parts[:high + 1] does not (or is all)
    while low < high:
        middle = (low + high + 1) // 2
        if count(joiner.join(parts[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return joiner.join(parts[:low])


def t5_token_counter(t5_folder: Path) -> Callable[[str], int]:
    """`count(text)`: T5 tokens of `text` with the closing </s>, by the tokenizer in `t5_folder`."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(t5_folder, local_files_only=True)
    except OSError as exc:
        raise MissingWeights(
            f"T5 tokenizer in {t5_folder} cannot be loaded ({first_line(exc)}); fetch "
            "it with `vidrefine download --only t5`"
        ) from exc

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])

    return count
