"""`vidrefine doctor --selftest`: the whole stage-II path on tiny random models, no downloads.

Builds a tiny T5 (sentencepiece trained on the spot), a tiny VAE and a tiny stage-II DiT with
random weights, writes a short clip with audio, refines it and checks the result: frame count,
timestamps, size and audio. It proves the installation (torch, PyAV, codecs, transformers) works
before anyone downloads 25 GB of weights; the picture it makes is noise.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from vidrefine.config import DiTConfig, RunConfig, VAEConfig, replace
from vidrefine.errors import VidrefineError

TINY_T5_WIDTH = 32
TINY_VAE = VAEConfig(block_out_channels=(32, 32, 32, 32))
TINY_DIT = DiTConfig(
    hidden_size=128, num_layers=2, num_heads=2, text_dim=TINY_T5_WIDTH, stage2_embeddings=True
)
SELFTEST_CONFIG = RunConfig(size="96x64", steps=2, window_latent=3, window_overlap_latent=1)


@dataclass
class SelftestReport:
    """What the self-test ran and measured."""

    input_frames: int
    output_frames: int
    output_hw: tuple[int, int]
    audio_streams: int
    seconds: float


def _pseudo_words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(count)]


def _sentencepiece_model(vocab_size: int, seed: int) -> bytes:
    import sentencepiece as spm

    rng = random.Random(seed)
    words = _pseudo_words(300, seed)
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]
    model = io.BytesIO()
    # T5's id layout: <pad>=0, </s>=1, <unk>=2 and no <s>.
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
    """Write a tiny transformers T5 folder (tokenizer + random T5 v1.1-style encoder)."""
    import sentencepiece as spm
    from transformers import T5Config, T5EncoderModel, T5Tokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spm_bytes = _sentencepiece_model(vocab_size, seed)
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
        feed_forward_proj="gated-gelu",  # the T5 v1.1 block
        is_encoder_decoder=False,
    )
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(folder)
    return folder


TINY_STAGE1 = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=TINY_T5_WIDTH)


def write_tiny_weights(folder: str | Path, *, seed: int = 0) -> Path:
    """Random-weight stand-ins for every official file, in the official formats.

    stage1.pt, stage2.pt, 3d-vae.pt and a t5-v1_1-xxl folder, all tiny (for demos and CI; the
    pictures they make are noise). Returns `folder`.
    """
    from vidrefine.checkpoints.dit_keys import to_official
    from vidrefine.models.dit import VideoDiT
    from vidrefine.models.vae import CausalVideoVAE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_t5(folder / "t5-v1_1-xxl", seed=seed)
    torch.manual_seed(seed)
    for name, config in (("stage1.pt", TINY_STAGE1), ("stage2.pt", TINY_DIT)):
        state = VideoDiT(config).state_dict()
        module = {f"model.diffusion_model.{to_official(k)}": v for k, v in state.items()}
        torch.save({"module": module}, folder / name)
    torch.save({"state_dict": CausalVideoVAE(TINY_VAE).state_dict()}, folder / "3d-vae.pt")
    return folder


def write_test_clip(path: Path, *, frames: int = 20, size_hw: tuple[int, int] = (48, 64)) -> None:
    """A moving gradient with a stereo tone, H.264 + AAC, 12 fps."""
    import av

    fps = Fraction(12)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = size_hw
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        y, x = np.mgrid[0 : size_hw[0], 0 : size_hw[1]]
        for i in range(frames):
            rgb = np.stack([(x * 4 + i * 8) % 256, (y * 4) % 256, (x + y + i) % 256], axis=-1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, 1 / fps
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(int(48000 * frames / fps)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        samples = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        samples.sample_rate, samples.pts = 48000, 0
        out.mux(audio.encode(samples))
        out.mux(audio.encode(None))


def run_selftest(
    config: RunConfig | None = None, *, device: torch.device | None = None
) -> SelftestReport:
    """Refine a generated clip with tiny random models; raise VidrefineError if anything is off."""
    from vidrefine.io.probe import probe
    from vidrefine.models.dit import VideoDiT
    from vidrefine.models.text import T5TextEncoder
    from vidrefine.models.vae import CausalVideoVAE
    from vidrefine.pipeline.devices import device_facts
    from vidrefine.pipeline.loading import StageTwoModels
    from vidrefine.pipeline.refine import ClipRefiner, RefineJob
    from vidrefine.plan.clip import SourceFacts, plan_clip

    config = config or SELFTEST_CONFIG
    device = device or torch.device("cpu")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vidrefine-selftest-") as tmp:
        folder = Path(tmp)
        clip, output = folder / "in.mp4", folder / "out.mp4"
        write_test_clip(clip)
        encoder = T5TextEncoder.from_folder(make_tiny_t5(folder / "t5"), dtype=torch.float32)
        caption = "a small selftest clip"
        states = encoder.encode([caption]).embeddings.cpu()
        encoder.release()
        torch.manual_seed(0)
        models = StageTwoModels(
            vae=CausalVideoVAE(TINY_VAE).to(device).eval(),
            dit=VideoDiT(TINY_DIT).to(device).eval(),
            device=device,
            dtype=torch.float32,
            vae_dtype=torch.float32,
        )
        config = replace(config, seed=0)
        source = probe(clip)
        plan = plan_clip(SourceFacts.of_media(source), config, device_facts(device))
        refiner = ClipRefiner(models, config, lambda _caption: states)
        refiner.refine_file(RefineJob(clip, output, caption), plan, source, resume=False)
        result = probe(output)
    report = SelftestReport(
        source.frame_count,
        result.frame_count,
        result.display_hw,
        len(result.audio),
        time.perf_counter() - start,
    )
    if report.output_frames != report.input_frames or report.audio_streams != len(source.audio):
        raise VidrefineError(f"selftest output does not match its input: {report}")
    return report
