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

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidrefine.config import DiTConfig
from vidrefine.models.rope import rotate

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


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Return x * (1 + scale) + shift; `shift`/`scale` are (B, 1, D) and broadcast over tokens."""
    return x * (1 + scale) + shift


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


def qk_prologue(
    x: torch.Tensor, norm: FP32LayerNorm, rotation: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Normalise q or k (B, heads, S, d) per head in fp32, rotate every token, cast to `dtype`.

    `rotation` (S, d/2, 2) is `rope.rope_rotation` with identity rows for the text tokens, so text
    passes unrotated exactly as in the original, which rotates only the video tokens.
    """
    return rotate(norm(x), rotation).to(dtype)


class JointAttention(nn.Module):
    """Full attention over [text; video] with per-head qk-LN and RoPE on video tokens only."""

    def __init__(self, cfg: DiTConfig) -> None:
        """Build fused qkv (rows [q; k; v]), shared-across-heads qk-LN and the output linear."""
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.q_norm = FP32LayerNorm(cfg.head_dim, eps=QK_NORM_EPS)
        self.k_norm = FP32LayerNorm(cfg.head_dim, eps=QK_NORM_EPS)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Attend over the joint sequence `x` (B, S, D), text first; returns (B, S, D).

        `rotation` is the RoPE table (S, head_dim/2, 2) of all S tokens (`rope.rope_rotation`).
        """
        q, k, v = rearrange(
            self.qkv(x), "b s (three n d) -> three b n s d", three=3, n=self.num_heads
        )
        q = qk_prologue(q, self.q_norm, rotation, v.dtype)
        k = qk_prologue(k, self.k_norm, rotation, v.dtype)
        o = F.scaled_dot_product_attention(q, k, v)  # (B, n, S, d), scale 1/sqrt(d), no mask
        return self.out(rearrange(o, "b n s d -> b s (n d)"))


class MLP(nn.Module):
    """Linear(D -> 4D), GELU (tanh approximation), Linear(4D -> D), shared by text and video."""

    def __init__(self, cfg: DiTConfig) -> None:
        """Build with inner width `cfg.mlp_ratio * cfg.hidden_size`."""
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.mlp_ratio * cfg.hidden_size)
        self.fc2 = nn.Linear(cfg.mlp_ratio * cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, S, D) -> (B, S, D)."""
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

        `rotation`: RoPE table (L + N, head_dim/2) from `rope.rope_rotation(..., text_len=L)`.
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
        a_v = modulate(self.norm1(video), shift_msa, scale_msa)
        a_s = modulate(self.norm1(text), txt_shift_msa, txt_scale_msa)
        o = self.attn(torch.cat([a_s, a_v], dim=1), rotation)
        video = video + gate_msa * o[:, text_len:]
        text = text + txt_gate_msa * o[:, :text_len]
        m_v = modulate(self.norm2(video), shift_mlp, scale_mlp)
        m_s = modulate(self.norm2(text), txt_shift_mlp, txt_scale_mlp)
        p = self.mlp(torch.cat([m_s, m_v], dim=1))
        video = video + gate_mlp * p[:, text_len:]
        text = text + txt_gate_mlp * p[:, :text_len]
        return video, text


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
        return self.linear(modulate(self.norm(video), shift, scale))
