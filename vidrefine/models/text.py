"""T5 caption encoder via transformers, as the original uses it (flashvideo-spec §7, pitfall 19).

Captions are padded to exactly 226 tokens and truncated beyond; the encoder gets no attention mask,
so padding tokens attend and are attended, and all 226 rows go to the DiT. The unconditional
embedding is all zeros (pitfall 3), never T5 of an empty or negative prompt.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidrefine.errors import BadCheckpoint, MissingWeights, first_line

TEXT_LENGTH = 226
T5_SOURCE = "google/t5-v1_1-xxl"

CacheKey = tuple[str, str, str]  # (caption, resolved model folder, dtype)


@dataclass(frozen=True)
class EncodedCaptions:
    """Caption embeddings plus what the CLI needs to warn about long captions.

    Attributes:
        embeddings: (B, 226, D) last hidden states on the encoder's device, in its dtype.
        token_counts: tokens per caption including the closing </s>, before truncation.
        truncated: per caption, whether it was cut at 226 tokens.
    """

    embeddings: torch.Tensor
    token_counts: tuple[int, ...]
    truncated: tuple[bool, ...]


class EmbeddingCache:
    """Caption embeddings kept on the CPU, keyed by (caption, model folder, dtype).

    Shared between encoders and runs so that a caption is encoded once, and usable after the
    encoder's weights were released.
    """

    def __init__(self) -> None:
        """Start empty."""
        self._rows: dict[CacheKey, tuple[torch.Tensor, int]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._rows

    def get(self, key: CacheKey) -> tuple[torch.Tensor, int] | None:
        """The (226, D) CPU embedding and token count stored for `key`, or None."""
        return self._rows.get(key)

    def put(self, key: CacheKey, embedding: torch.Tensor, token_count: int) -> None:
        """Store one caption's (226, D) embedding (moved to the CPU) and its token count."""
        self._rows[key] = (embedding.detach().to("cpu"), token_count)

    def clear(self) -> None:
        """Forget every stored embedding."""
        self._rows.clear()


def zero_uncond(embeddings: torch.Tensor) -> torch.Tensor:
    """The original's unconditional embedding: zeros shaped like the caption embedding."""
    return torch.zeros_like(embeddings)


def _missing(folder: Path, what: str) -> MissingWeights:
    return MissingWeights(
        f"T5 text encoder: {what} in {folder}; it must be a transformers T5 folder (config.json, "
        f"weights, spiece.model or tokenizer.json), e.g. `huggingface-cli download {T5_SOURCE} "
        f"--local-dir {folder}`"
    )


def _reason(err: BaseException) -> str:
    """The first line of `err`, without torch's advice to unpickle with weights_only=False."""
    line = first_line(err)
    if "weights_only" in line or "Weights only load failed" in line:
        return "holds Python objects or is damaged; vidrefine never runs code from a weight file"
    return line


def _names_a_missing_file(err: OSError) -> bool:
    text = str(err)
    return isinstance(err, FileNotFoundError) or "does not appear to have" in text


def _damaged(folder: Path, err: BaseException) -> BadCheckpoint:
    return BadCheckpoint(
        f"T5 text encoder folder {folder} cannot be read ({type(err).__name__}: {_reason(err)}): "
        "a weight or tokenizer file is damaged or cut short; fetch it again with "
        "`vidrefine download --only t5`"
    )


class T5TextEncoder:
    """T5 v1.1 encoder + tokenizer producing the (B, 226, D) caption embeddings the DiT reads."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        folder: Path,
        cache: EmbeddingCache | None = None,
    ) -> None:
        """Wrap a loaded `T5EncoderModel` and its tokenizer; prefer `from_folder`."""
        self._model: torch.nn.Module | None = model.eval().requires_grad_(False)
        self._tokenizer = tokenizer
        self.folder = folder
        self.dtype: torch.dtype = next(model.parameters()).dtype
        self.device: torch.device = next(model.parameters()).device
        self.width: int = model.config.d_model
        self.cache: EmbeddingCache = cache if cache is not None else EmbeddingCache()

    def set_device(self, device: str | torch.device) -> None:
        """Send token ids to `device`: for an encoder whose blocks the caller placed there
        (e.g. streamed from host memory by `vidrefine.runtime.placement`).
        """
        self.device = torch.device(device)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer the captions go through (transformers' own T5 tokenizer)."""
        return self._tokenizer

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The encoder's transformer blocks (what layer streaming moves)."""
        if self._model is None:
            raise RuntimeError("T5TextEncoder.release() was called; load it again to encode")
        return self._model.encoder.block

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        cache: EmbeddingCache | None = None,
    ) -> T5TextEncoder:
        """Load a local transformers T5 folder; never touches the network.

        The original runs T5 in bf16 (spec §7). Raises MissingWeights naming the folder when it or
        its files are absent, BadCheckpoint when they cannot be loaded.
        """
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # vidrefine shows its own progress

        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise _missing(folder, "folder not found")
        if not (folder / "config.json").is_file():
            raise _missing(folder, "config.json not found")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = T5EncoderModel.from_pretrained(folder, dtype=dtype, local_files_only=True)
        except OSError as err:
            if _names_a_missing_file(err):
                raise _missing(folder, f"cannot load ({_reason(err)})") from err
            raise _damaged(folder, err) from err
        except Exception as err:  # safetensors, pickle, sentencepiece: a damaged file
            raise _damaged(folder, err) from err
        return cls(model.to(device), tokenizer, folder=folder, cache=cache)

    @property
    def model(self) -> torch.nn.Module | None:
        """The wrapped `T5EncoderModel` (None after `release`), e.g. for offloading."""
        return self._model

    def _key(self, caption: str) -> CacheKey:
        return (caption, str(self.folder), str(self.dtype))

    def _token_counts(self, captions: list[str]) -> list[int]:
        ids = self._tokenizer(captions, add_special_tokens=True, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    @torch.inference_mode()
    def _run(self, captions: list[str]) -> torch.Tensor:
        """(B, 226, D) hidden states for `captions`, padded to 226, no attention mask (§7)."""
        if self._model is None:
            raise RuntimeError("T5TextEncoder.release() was called; load it again to encode")
        tokens = self._tokenizer(
            captions,
            padding="max_length",
            max_length=TEXT_LENGTH,
            truncation=True,
            return_tensors="pt",
        )
        input_ids = tokens["input_ids"].to(self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._model(input_ids=input_ids).last_hidden_state

    def encode(self, captions: list[str]) -> EncodedCaptions:
        """Embed `captions`, encoding only those not already in the cache (one batch)."""
        if not captions:
            raise ValueError("encode() needs at least one caption")
        todo = [c for c in dict.fromkeys(captions) if self._key(c) not in self.cache]
        if todo:
            hidden = self._run(todo)
            for caption, row, count in zip(todo, hidden, self._token_counts(todo), strict=True):
                self.cache.put(self._key(caption), row, count)
        rows = [self.cache.get(self._key(c)) for c in captions]
        counts = tuple(count for _, count in rows)
        embeddings = torch.stack([row for row, _ in rows]).to(self.device)
        truncated = tuple(count > TEXT_LENGTH for count in counts)
        return EncodedCaptions(embeddings, counts, truncated)

    def release(self) -> None:
        """Free the T5 weights (device memory included); cached embeddings stay usable."""
        self._model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
