"""A tiny Qwen3-VL captioner folder built offline, in the layout of Qwen/Qwen3-VL-2B-Instruct.

`make_tiny_qwen3vl(folder)` trains a small byte-level BPE tokenizer on seeded pseudo-words (with
Qwen's chat and vision special tokens), builds a random Qwen3-VL model from a small config and
saves both with save_pretrained, plus the chat template and video settings files the bundled
captioner reads. Nothing touches the network; the same seed gives the same folder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS_SEED = 77

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TINY_PATCH = 16  # Qwen3-VL's patch; 2x2 merge and 2-frame temporal patches as the real model

# A short stand-in for the official template: same roles and vision markers, written here.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Long words unlike the tiny T5's, learnt whole: each generated token is then a word T5
    # spells in many pieces, so a short answer overflows the 226 T5 tokens stage II reads.
    rng = random.Random(WORDS_SEED + seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(10, 16))) for _ in range(60)]
    lines = [" ".join(words[i : i + 6]) + "." for i in range(0, len(words), 2)] * 4
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )


def _config(tokenizer):
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000.0,
            "mrope_section": [2, 3, 3],  # sums to head_dim / 2
            "mrope_interleaved": True,
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": TINY_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 32,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [1],
    }
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,  # tied, a random model only echoes its last token
    )


def _speak_in_words(model, tokenizer) -> None:
    """Zero the output rows of every token but whole space-led words (no end token either): a
    random model then answers in words, at full length, as a real captioner answers.
    """
    import torch

    words = [i for t, i in tokenizer.get_vocab().items() if t.startswith("\u0120") and len(t) > 9]
    silent = torch.ones(len(tokenizer), dtype=torch.bool)
    silent[words] = False
    with torch.no_grad():
        model.lm_head.weight[silent] = 0.0


def make_tiny_qwen3vl(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL captioner folder (tokenizer, model, template, video config)."""
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(seed)
    tokenizer.save_pretrained(folder)
    config = _config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    _speak_in_words(model, tokenizer)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    video = {
        "patch_size": TINY_PATCH,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video))
    return folder


def make_cut_clip(
    path: Path,
    *,
    frames: int = 30,
    cut: int = 15,
    fps: int = 10,
    size_hw: tuple[int, int] = (48, 64),
) -> Path:
    """A clip of two unlike shots joined by a hard cut at frame `cut`: a warm gradient that
    slides right, then a cold checkerboard that slides down (seeded by nothing: pure patterns).
    """
    import av
    import numpy as np

    height, width = size_hw
    rows, cols = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            if index < cut:
                ramp = ((cols + 3 * index) * 255 // width) % 256
                picture = np.stack([ramp, ramp // 2, np.full_like(ramp, 30)], axis=-1)
            else:
                checks = (((rows + 2 * index) // 8 + cols // 8) % 2) * 180 + 40
                picture = np.stack([np.full_like(checks, 20), checks // 2, checks], axis=-1)
            frame = av.VideoFrame.from_ndarray(picture.astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path
