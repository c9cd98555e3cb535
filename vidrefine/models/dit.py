"""CogVideoX-style video DiT used by FlashVideo's both stages (flashvideo-spec §3).

Stage I (generator) and stage II (refiner) differ only by `DiTConfig`: stage II adds two
timestep-like embeddings (latent frame count, degradation step) to the adaLN conditioning.

Parameter names are our own, short and grouped by module (`blocks.{l}.attn.qkv`,
`blocks.{l}.modulation`, `head.linear`, ...) rather than the official SAT names, which spread one
layer over three places (`transformer.layers.{l}`, `mixins.adaln_layer.*_list.{l}`, ...). The
official-name table lives in `vidrefine.checkpoints.dit_keys`, where the fixtures test it.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vidrefine.config import DiTConfig
from vidrefine.models.dit_blocks import DiTBlock, FP32LayerNorm, OutputHead, TimestepMLP
from vidrefine.models.rope import rope_rotation

# transformer.final_layernorm uses SAT's default eps (spec §2.1, pitfall 13).
FINAL_NORM_EPS = 1e-5


def _per_sample(value: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """Return `value` as a (batch,) tensor; a scalar or 1-element tensor is broadcast."""
    value = torch.as_tensor(value).reshape(-1)
    if value.numel() == 1:
        return value.expand(batch)
    if value.numel() != batch:
        raise ValueError(f"{name} has {value.numel()} values for a batch of {batch}")
    return value


class VideoDiT(nn.Module):
    """Joint text+video transformer with expert adaLN and 3D RoPE; holds no buffers.

    Layouts: latents (B, T, C, H, W) with time before channels, as the original; tokens are
    [text (L); video (T * H/p * W/p) ordered (t, h, w), w fastest].
    """

    def __init__(self, cfg: DiTConfig) -> None:
        """Build every parameter from `cfg` (no file I/O; see `vidrefine.checkpoints.load_dit`)."""
        super().__init__()
        self.config = cfg
        p, hidden = cfg.patch_size, cfg.hidden_size
        self.patch_proj = nn.Conv2d(cfg.in_channels, hidden, kernel_size=p, stride=p)
        self.text_proj = nn.Linear(cfg.text_dim, hidden)
        self.time_embed = TimestepMLP(cfg)
        # Stage II only (spec §3.3): embeddings of the latent frame count and degradation step.
        self.frames_embed = TimestepMLP(cfg) if cfg.stage2_embeddings else None
        self.ref_step_embed = TimestepMLP(cfg) if cfg.stage2_embeddings else None
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.num_layers))
        self.final_norm = FP32LayerNorm(hidden, eps=FINAL_NORM_EPS)
        self.head = OutputHead(cfg)

    def forward(
        self,
        x: torch.Tensor,
        timestep_index: torch.Tensor,
        context: torch.Tensor,
        *,
        num_frames: torch.Tensor | None = None,
        ref_step: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the network output (velocity in stage II, v in stage I) for latents `x`.

        Args:
            x: latents (B, T, C, H, W); H and W divisible by the patch size.
            timestep_index: (B,) float network timestep (0..1000). Its dtype is the caller's
                choice: the faithful path feeds bf16-rounded values (spec §5.4); the sinusoid
                itself is always computed in fp32.
            context: text states (B, L, text_dim); the uncond branch passes zeros (pitfall 3).
                RoPE starts after these L tokens, whatever L is.
            num_frames: stage II only, (B,) latent frame count to embed; defaults to T.
            ref_step: stage II only, (B,) degradation step index (the original feeds 676, the
                bf16 rounding of 675); required for a stage-II model.

        Returns:
            (B, T, C_out, H, W) in the compute dtype (the weight dtype, or autocast's).
        """
        emb, video, text, rotation = self.prepare(
            x, timestep_index, context, num_frames=num_frames, ref_step=ref_step
        )
        patches = self.transform(video, text, emb, rotation)
        return self.unpatchify(patches, (x.shape[1], x.shape[3], x.shape[4]))

    def prepare(
        self,
        x: torch.Tensor,
        timestep_index: torch.Tensor,
        context: torch.Tensor,
        **conditions: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the blocks start from, for `forward`'s arguments (`conditions`: its keywords).

        Returns:
            The adaLN conditioning (B, E), video tokens (B, N, D), text tokens (B, L, D) and
            the RoPE table (L + N, head_dim/2, 2) of the whole sequence.
        """
        b, t, _, h, w = x.shape
        p = self.config.patch_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {p}")
        dtype = self.patch_proj.weight.dtype
        emb = self.embed_time(timestep_index, b, t, **conditions)
        video = self.embed_video(x.to(dtype))
        text = self.text_proj(context.to(dtype))
        grid_thw = (t, h // p, w // p)
        rotation = rope_rotation(
            grid_thw, self.config.head_dim, text_len=text.shape[1], device=x.device
        )
        return emb, video, text, rotation

    def transform(
        self, video: torch.Tensor, text: torch.Tensor, emb: torch.Tensor, rotation: torch.Tensor
    ) -> torch.Tensor:
        """The blocks and the output head: video tokens (B, N, D) -> patches (B, N, C*p*p).

        `rotation` has a row per token of [text; video]. Everything but attention is token-wise,
        so a caller may pass a slice of the video tokens with their rows of `rotation` (sequence
        parallel, `runtime.sequence_parallel`) and gets that slice's patches.
        """
        for block in self.blocks:
            video, text = block(video, text, emb, rotation)
        video = self.final_norm(video)  # rebound: the residual stream dies here
        return self.head(video, emb)  # (B, N, C*p*p)

    def unpatchify(self, patches: torch.Tensor, latent_thw: tuple[int, int, int]) -> torch.Tensor:
        """Patches (B, N, C*p*p) -> latents (B, T, C, H, W) of `latent_thw` (T, H, W)."""
        t, h, w = latent_thw
        p = self.config.patch_size
        return rearrange(
            patches,
            "b (t h w) (c p q) -> b t c (h p) (w q)",
            t=t,
            h=h // p,
            w=w // p,
            p=p,
            q=p,
        )

    def embed_video(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame patch embedding: (B, T, C, H, W) -> tokens (B, T*H/p*W/p, D), (t, h, w)."""
        b = x.shape[0]
        frames = rearrange(x, "b t c h w -> (b t) c h w")
        tokens = self.patch_proj(frames)  # (B*T, D, H/p, W/p)
        return rearrange(tokens, "(b t) d h w -> b (t h w) d", b=b)

    def embed_time(
        self,
        timestep_index: torch.Tensor,
        batch: int,
        latent_frames: int,
        *,
        num_frames: torch.Tensor | None = None,
        ref_step: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the adaLN conditioning (B, E): time_embed, plus stage II's two extra MLPs."""
        emb = self.time_embed(_per_sample(timestep_index, batch, "timestep_index"))
        if self.frames_embed is None or self.ref_step_embed is None:
            if num_frames is not None or ref_step is not None:
                raise ValueError("num_frames/ref_step are stage-II inputs; this DiT is stage I")
            return emb
        if ref_step is None:
            raise ValueError("a stage-II DiT needs ref_step (the degradation step index)")
        if num_frames is None:
            num_frames = torch.full((batch,), float(latent_frames), device=emb.device)
        # Summed in the original's order (spec §3.3, pitfall 10).
        emb = emb + self.frames_embed(_per_sample(num_frames, batch, "num_frames"))
        return emb + self.ref_step_embed(_per_sample(ref_step, batch, "ref_step"))
