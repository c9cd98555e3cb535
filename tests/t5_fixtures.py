"""A tiny transformers-format T5 folder built offline (sentencepiece + random T5 encoder).

`make_tiny_t5(folder)` trains a small unigram sentencepiece model on a seeded word list, builds a
T5Tokenizer from its pieces and a tiny random T5EncoderModel, and saves both with save_pretrained,
so `AutoTokenizer` / `T5EncoderModel.from_pretrained(folder, local_files_only=True)` work without
network. Shared by every test that needs a text encoder.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

TINY_T5_WIDTH = 32
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


def _train_sentencepiece(vocab_size: int, seed: int) -> bytes:
    import sentencepiece as spm

    rng = random.Random(seed)
    words = tiny_words()
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]
    model = io.BytesIO()
    # T5's layout: <pad>=0, </s>=1, <unk>=2, no <s>.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def make_tiny_t5(folder: str | Path, *, seed: int = 0, vocab_size: int = 200) -> Path:
    """Write a tiny T5 encoder + tokenizer folder (d_model 32, 2 layers, 2 heads) and return it.

    The folder holds what a hub T5 folder holds (spiece.model, tokenizer files, config.json,
    model weights); the encoder weights are random but seeded.
    """
    import sentencepiece as spm
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spm_bytes = _train_sentencepiece(vocab_size, seed)
    (folder / "spiece.model").write_bytes(spm_bytes)
    processor = spm.SentencePieceProcessor(model_proto=spm_bytes)
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(len(processor))]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=100)
    tokenizer.save_pretrained(folder)

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=TINY_T5_WIDTH,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        feed_forward_proj="gated-gelu",  # the T5 v1.1 block, as google/t5-v1_1-xxl
        is_encoder_decoder=False,
    )
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(folder)
    return folder
