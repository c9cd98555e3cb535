"""A tiny transformers-format T5 folder built offline (sentencepiece + random T5 encoder).

`make_tiny_t5(folder)` trains a small unigram sentencepiece model on a seeded word list, builds a
T5Tokenizer from its pieces and a tiny random T5EncoderModel, and saves both with save_pretrained,
so `AutoTokenizer` / `T5EncoderModel.from_pretrained(folder, local_files_only=True)` work without
network. Shared by every test that needs a text encoder.
"""

from __future__ import annotations

import random
from pathlib import Path

from vidrefine.pipeline.selftest import TINY_T5_WIDTH  # noqa: F401 (re-exported)

WORDS_SEED = 1234


def tiny_words(count: int = 300, *, seed: int = WORDS_SEED) -> list[str]:
    """Seeded pseudo-words (2-8 lowercase letters); captions for tests are drawn from these."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(count)]


def tiny_caption(n_words: int, *, seed: int = 0) -> str:
    """A caption of `n_words` seeded pseudo-words."""
    rng = random.Random(seed)
    words = tiny_words()
    return " ".join(rng.choice(words) for _ in range(n_words))


def make_tiny_t5(folder: str | Path, *, seed: int = 0, vocab_size: int = 200) -> Path:
    """The self-test's tiny T5 folder (d_model 32, 2 layers); see vidrefine.pipeline.selftest."""
    from vidrefine.pipeline.selftest import make_tiny_t5 as build

    return build(folder, seed=seed, vocab_size=vocab_size)
