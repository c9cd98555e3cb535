"""Building blocks of the CogVideoX-style DiT (flashvideo-spec §3.3-3.7).

Precision islands (spec §9.4), each named so a test can assert it:
* `timestep_sinusoid` is computed in fp32; the MLP that reads it casts it to its weight dtype.
* `FP32LayerNorm` normalises in fp32; under autocast it returns fp32 (as torch autocast's own
  layer_norm does, so the modulation that follows runs in fp32), otherwise the input dtype.
* RoPE runs in fp32 (`rope.rotate`); q and k are then cast to v's dtype for attention.

The attention prologue (`qk_prologue`: qk-LN, RoPE, cast) is one function over all tokens, text
included (their rotation is the identity), so eager mode makes few full-size passes over q and k
and `torch.compile` can fuse it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidrefine.config import DiTConfig
from vidrefine.models.rope import rotate_

# LayerNorm epsilons (spec §2.1, §3.5, §3.7): SAT's transformer norms use 1e-5, qk-LN and
# norm_final use 1e-6 (pitfall 13).
BLOCK_NORM_EPS = 1e-5
QK_NORM_EPS = 1e-6
HEAD_NORM_EPS = 1e-6
SINUSOID_MAX_PERIOD = 10000.0
MODULATION_CHUNKS = 12


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Return the fp32 sinusoid (B, dim) of timesteps `t` (B,), cos half first (pitfall 15).

    f_k = exp(-ln(10000) k / (dim/2)); emb = [cos(t f), sin(t f)]. `t` is read as given then
    widened to fp32, so a caller feeding bf16-rounded values gets the original's numbers (§5.4).
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(SINUSOID_MAX_PERIOD) * k / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (a precision island, spec §9.4).

    Under autocast the result stays fp32, as autocast's layer_norm does in the original bf16 run;
    without autocast it is cast back to the input dtype so a plain bf16 model stays bf16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dim of `x` (..., D)."""
        out = F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        )
        if torch.is_autocast_enabled(x.device.type):
            return out
        return out.to(x.dtype)


def modulate_(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Return x * (1 + scale) + shift, written into `x` (a fresh normalised tensor we own).

    `shift`/`scale` are (B, 1, D) and broadcast over tokens. Same operations and dtypes as the
    out-of-place form, so the same numbers, one full-size temporary fewer.
    """
    return x.mul_(1 + scale).add_(shift)


class TimestepMLP(nn.Module):
    """Linear(hidden -> E), SiLU, Linear(E -> E) over a timestep sinusoid of width `hidden`."""

    def __init__(self, cfg: DiTConfig) -> None:
        """Build for `cfg.hidden_size` -> `cfg.time_embed_dim`."""
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.time_embed_dim)
        self.fc2 = nn.Linear(cfg.time_embed_dim, cfg.time_embed_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed timesteps `t` (B,) -> (B, E); the fp32 sinusoid is cast to the weight dtype."""
        weight = self.fc1.weight
        sinusoid = timestep_sinusoid(t.to(weight.device), self.fc1.in_features).to(weight.dtype)
        return self.fc2(F.silu(self.fc1(sinusoid)))


CHUNK_TOKENS = 8192  # tokens per slice of the token-wise steps (qk prologue, MLP) in eager mode


def qk_prologue(
    x: torch.Tensor, norm: FP32LayerNorm, rotation: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Normalise q or k (B, heads, S, d) per head in fp32, rotate every token, cast to `dtype`.

    `rotation` (S, d/2, 2) is `rope.rope_rotation` with identity rows for the text tokens, so text
    passes unrotated exactly as in the original, which rotates only the video tokens. In eager
    mode long sequences go slice by slice, so the fp32 temporaries exist for one slice only;
    under `torch.compile` it is one expression that inductor fuses.
    """
    tokens = x.shape[2]
    if torch.compiler.is_compiling() or tokens <= CHUNK_TOKENS:
        return rotate_(norm(x).float(), rotation).to(dtype)  # norm's output is fresh: ours
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    for start in range(0, tokens, CHUNK_TOKENS):
        part = slice(start, start + CHUNK_TOKENS)
        out[:, :, part] = rotate_(norm(x[:, :, part]).float(), rotation[part])  # cast on copy
    return out


class JointAttention(nn.Module):
    """Full attention over [text; video] with per-head qk-LN and RoPE on video tokens only.

    It has no `forward`: `DiTBlock` calls `qkv`, `attend` and `out` in turn (see `attend`).
    `kernel` attends q, k, v (B, heads, S, d) -> (B, heads, S, d); it is torch's SDPA, and the
    one hook a runtime may swap (sequence parallel's all-to-all, `runtime.sequence_parallel`).
    """

    kernel: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

    def __init__(self, cfg: DiTConfig) -> None:
        """Build fused qkv (rows [q; k; v]), shared-across-heads qk-LN and the output linear."""
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.q_norm = FP32LayerNorm(cfg.head_dim, eps=QK_NORM_EPS)
        self.k_norm = FP32LayerNorm(cfg.head_dim, eps=QK_NORM_EPS)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.kernel = F.scaled_dot_product_attention

    def attend(self, qkv: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Heads attended, from the projected qkv (B, S, 3D) to (B, S, D) before `out`.

        The joint sequence is text first; `rotation` is the RoPE table (S, head_dim/2, 2) of all
        S tokens (`rope.rope_rotation`). `DiTBlock` calls `qkv`, `attend` and `out` one by one
        so that it holds neither the block input nor qkv longer than needed.
        """
        q, k, v = rearrange(qkv, "b s (three n d) -> three b n s d", three=3, n=self.num_heads)
        q = qk_prologue(q, self.q_norm, rotation, v.dtype)
        k = qk_prologue(k, self.k_norm, rotation, v.dtype)
        o = self.kernel(q, k, v)  # (B, n, S, d), scale 1/sqrt(d), no mask
        del q, k, v
        return rearrange(o, "b n s d -> b s (n d)")


class MLP(nn.Module):
    """Linear(D -> 4D), GELU (tanh approximation), Linear(4D -> D), shared by text and video.

    Token-wise, so it runs over slices of `CHUNK_TOKENS` tokens: the 4D-wide hidden of a slice,
    not of the whole sequence, is alive at once (16 bytes per token per channel in bf16, the
    largest activation of a block otherwise).
    """

    def __init__(self, cfg: DiTConfig) -> None:
        """Build with inner width `cfg.mlp_ratio * cfg.hidden_size`."""
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.mlp_ratio * cfg.hidden_size)
        self.fc2 = nn.Linear(cfg.mlp_ratio * cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, S, D) -> (B, S, D), slice by slice along S."""
        tokens = x.shape[1]
        if tokens <= CHUNK_TOKENS:
            return self._slice(x)
        out = None
        for start in range(0, tokens, CHUNK_TOKENS):
            part = self._slice(x[:, start : start + CHUNK_TOKENS])
            if out is None:
                out = part.new_empty(x.shape[0], tokens, part.shape[-1])
            out[:, start : start + part.shape[1]] = part
        return out

    def _slice(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """Expert-adaLN block (spec §3.4): shared weights, separate text/video modulation vectors."""

    def __init__(self, cfg: DiTConfig) -> None:
        """Build norms, attention, MLP and the Linear(E -> 12 D) modulation."""
        super().__init__()
        self.norm1 = FP32LayerNorm(cfg.hidden_size, eps=BLOCK_NORM_EPS)
        self.attn = JointAttention(cfg)
        self.norm2 = FP32LayerNorm(cfg.hidden_size, eps=BLOCK_NORM_EPS)
        self.mlp = MLP(cfg)
        self.modulation = nn.Linear(cfg.time_embed_dim, MODULATION_CHUNKS * cfg.hidden_size)

    def forward(
        self,
        video: torch.Tensor,
        text: torch.Tensor,
        emb: torch.Tensor,
        rotation: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the residual streams `video` (B, N, D) and `text` (B, L, D) given `emb` (B, E).

        `rotation`: RoPE table (L + N, head_dim/2, 2) from `rope.rope_rotation(..., text_len=L)`.
        """
        # Chunk order of the original (spec §3.4, pitfall 12); each chunk (B, 1, D).
        (
            shift_msa,
            scale_msa,
            gate_msa,
            shift_mlp,
            scale_mlp,
            gate_mlp,
            txt_shift_msa,
            txt_scale_msa,
            txt_gate_msa,
            txt_shift_mlp,
            txt_scale_mlp,
            txt_gate_mlp,
        ) = self.modulation(F.silu(emb))[:, None, :].chunk(MODULATION_CHUNKS, dim=-1)
        text_len = text.shape[1]
        # Temporaries are not kept in names, so each dies as soon as it is used: the fp32 joint
        # sequence is freed once projected to qkv, the attention output after its residual add.
        qkv = self.attn.qkv(
            joint_sequence(
                self.norm1, (text, txt_shift_msa, txt_scale_msa), (video, shift_msa, scale_msa)
            )
        )
        o = self.attn.attend(qkv, rotation)
        del qkv
        o = self.attn.out(o)
        video = video + gate_msa * o[:, text_len:]
        text = text + txt_gate_msa * o[:, :text_len]
        del o
        p = self.mlp(
            joint_sequence(
                self.norm2, (text, txt_shift_mlp, txt_scale_mlp), (video, shift_mlp, scale_mlp)
            )
        )
        video = video + gate_mlp * p[:, text_len:]
        text = text + txt_gate_mlp * p[:, :text_len]
        return video, text


def joint_sequence(
    norm: FP32LayerNorm,
    text: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    video: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """[modulate(norm(text)); modulate(norm(video))] along tokens; each is (x, shift, scale)."""
    parts = [modulate_(norm(x), shift, scale) for x, shift, scale in (text, video)]
    return torch.cat(parts, dim=1)


class OutputHead(nn.Module):
    """norm_final (eps 1e-6) modulated by [shift, scale], then Linear(D -> p*p*C_out) (§3.7)."""

    def __init__(self, cfg: DiTConfig) -> None:
        """Build the norm, the Linear(E -> 2 D) modulation and the output linear."""
        super().__init__()
        self.norm = FP32LayerNorm(cfg.hidden_size, eps=HEAD_NORM_EPS)
        self.modulation = nn.Linear(cfg.time_embed_dim, 2 * cfg.hidden_size)
        self.linear = nn.Linear(cfg.hidden_size, cfg.patch_size**2 * cfg.out_channels)

    def forward(self, video: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Map video tokens (B, N, D) -> per-token patches (B, N, C_out*p*p), channel slowest."""
        shift, scale = self.modulation(F.silu(emb))[:, None, :].chunk(2, dim=-1)
        return self.linear(modulate_(self.norm(video), shift, scale))
