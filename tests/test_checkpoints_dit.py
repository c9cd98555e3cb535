"""load_dit / convert_dit on tiny official-format files written by tests/dit_fixtures.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from dit_fixtures import (
    TINY_TEXT_DIM,
    TINY_TEXT_LEN,
    engine_dict,
    lora_wrapped,
    official_dit_tensors,
    write_official,
)

from vidrefine.checkpoints import convert_dit, load_dit, read_dit_weights, save_safetensors
from vidrefine.config import DiTConfig
from vidrefine.errors import BadCheckpoint, MissingWeights, OutputExists

TINY2 = DiTConfig(hidden_size=128, num_layers=2, num_heads=2, text_dim=TINY_TEXT_DIM)
TINY2 = dataclasses.replace(TINY2, stage2_embeddings=True, text_length=TINY_TEXT_LEN)


def run(model, stage2: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 16, 4, 6, generator=gen)
    context = torch.randn(1, TINY_TEXT_LEN, TINY_TEXT_DIM, generator=gen)
    extra = {"ref_step": torch.tensor([676.0])} if stage2 else {}
    with torch.no_grad():
        return model(x, torch.tensor([624.0]), context, **extra)


def test_stage2_file_loads_with_inferred_config_when_no_config_is_given(tmp_path: Path) -> None:
    path = write_official(tmp_path / "stage2.pt", official_dit_tensors(stage2=True))
    weights = read_dit_weights(path)
    assert dataclasses.replace(weights.config, text_length=TINY_TEXT_LEN) == TINY2
    assert weights.ignored == {"first_stage_model": 1, "conditioner": 1}
    assert weights.dropped == [
        "mixins.pos_embed.freqs_cos",
        "mixins.pos_embed.freqs_sin",
        "transformer.position_embeddings.weight",
    ]
    assert "ignored 1 conditioner.* keys" in weights.summary()
    model = load_dit(path, TINY2)
    assert model.config == TINY2
    assert torch.isfinite(run(model, stage2=True)).all()


def test_every_official_tensor_lands_in_its_parameter_when_loaded(tmp_path: Path) -> None:
    official = official_dit_tensors(stage2=True, seed=4)
    model = load_dit(write_official(tmp_path / "s.pt", official))
    # A few spot checks named from the spec's table, including the fused/ordered ones.
    pairs = {
        "transformer.layers.1.attention.query_key_value.weight": model.blocks[1].attn.qkv.weight,
        "mixins.adaln_layer.adaLN_modulations.0.1.bias": model.blocks[0].modulation.bias,
        "mixins.adaln_layer.key_layernorm_list.1.weight": model.blocks[1].attn.k_norm.weight,
        "time_size_embedding.2.weight": model.frames_embed.fc2.weight,
        "ref_step_time_embedding.0.bias": model.ref_step_embed.fc1.bias,
        "mixins.final_layer.adaLN_modulation.1.weight": model.head.modulation.weight,
        "transformer.final_layernorm.bias": model.final_norm.bias,
        "mixins.final_layer.norm_final.weight": model.head.norm.weight,
    }
    for key, param in pairs.items():
        assert torch.equal(param, official[key]), key
    total = sum(p.numel() for p in model.parameters())
    assert total == sum(v.numel() for v in official.values())


def test_lora_unmerged_file_matches_merged_file_when_loaded(tmp_path: Path) -> None:
    base = official_dit_tensors(stage2=False, seed=2)
    unmerged, merged = lora_wrapped(base, rank=4)
    a = load_dit(write_official(tmp_path / "lora.pt", unmerged))
    b = load_dit(write_official(tmp_path / "merged.pt", merged))
    plain = load_dit(write_official(tmp_path / "base.pt", base))
    assert len(read_dit_weights(tmp_path / "lora.pt").lora_merged) == 6  # 3 linears x 2 layers
    out_a, out_b, out_plain = run(a, False), run(b, False), run(plain, False)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-5)
    assert (out_a - out_plain).abs().max().item() > 1e-3  # the LoRA delta matters


def test_stage1_file_is_refused_with_the_mismatch_named_when_stage2_is_expected(
    tmp_path: Path,
) -> None:
    path = write_official(tmp_path / "stage1.pt", official_dit_tensors(hidden=192, stage2=False))
    with pytest.raises(BadCheckpoint) as err:
        load_dit(path, TINY2)
    message = str(err.value)
    assert "stage1.pt passed where stage II is expected" in message
    assert "hidden 192" in message and "hidden 128" in message
    assert "no time_size_embedding" in message and "the time_size_embedding" in message


def test_missing_and_unexpected_keys_are_named_in_official_form_when_loading(
    tmp_path: Path,
) -> None:
    official = official_dit_tensors(stage2=True)
    del official["mixins.final_layer.linear.bias"]
    path = write_official(tmp_path / "missing.pt", official)
    with pytest.raises(BadCheckpoint, match=r"1 missing: mixins\.final_layer\.linear\.bias"):
        load_dit(path)
    official = official_dit_tensors(stage2=True)
    official["transformer.layers.0.attention.rotary.weight"] = torch.zeros(3)
    path = write_official(tmp_path / "extra.pt", official)
    with pytest.raises(
        BadCheckpoint, match=r"unexpected: transformer\.layers\.0\.attention\.rotary"
    ):
        load_dit(path)


def test_wrong_shape_is_named_when_one_tensor_has_another_size(tmp_path: Path) -> None:
    official = official_dit_tensors(stage2=True)
    official["transformer.layers.1.mlp.dense_4h_to_h.bias"] = torch.zeros(7)
    with pytest.raises(BadCheckpoint, match=r"wrong shape: transformer\.layers\.1\.mlp\.dense_4h"):
        load_dit(write_official(tmp_path / "shape.pt", official))


def test_truncated_file_is_refused_when_loading(tmp_path: Path) -> None:
    path = write_official(tmp_path / "stage2.pt", official_dit_tensors(stage2=True))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadCheckpoint, match="truncated|could not be read"):
        load_dit(path)


def test_vae_file_is_refused_with_a_hint_when_passed_as_the_dit(tmp_path: Path) -> None:
    vae = {
        "encoder.conv_in.conv.weight": torch.zeros(8, 3, 3, 3, 3),
        "decoder.conv_out.conv.weight": torch.zeros(3, 8, 3, 3, 3),
        "loss.logvar": torch.zeros(1),
    }
    path = tmp_path / "3d-vae.pt"
    torch.save({"state_dict": vae}, path)
    with pytest.raises(BadCheckpoint, match="looks like a VAE"):
        load_dit(path, TINY2)


def test_missing_file_raises_missing_weights_when_the_path_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(MissingWeights):
        load_dit(tmp_path / "stage2.pt")


def test_converted_file_reloads_identically_when_written_by_convert_dit(tmp_path: Path) -> None:
    base = official_dit_tensors(stage2=False, seed=5)
    unmerged, _ = lora_wrapped(base, rank=4)
    src = write_official(tmp_path / "stage1.pt", unmerged)
    dst = tmp_path / "stage1.safetensors"
    convert_dit(src, dst)
    original, converted = load_dit(src), load_dit(dst)
    assert converted.config == original.config
    for (ka, va), (kb, vb) in zip(
        original.state_dict().items(), converted.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(OutputExists):
        convert_dit(src, dst)
    with pytest.raises(BadCheckpoint, match="passed where stage II is expected"):
        load_dit(dst, TINY2)


def test_safetensors_of_another_kind_is_refused_when_loaded_as_dit(tmp_path: Path) -> None:
    path = tmp_path / "vae.safetensors"
    save_safetensors({"w": torch.zeros(2)}, path, {"vidrefine_format": "vae", "config": "{}"})
    with pytest.raises(BadCheckpoint, match="'vae' file, not a DiT"):
        load_dit(path)


def test_plain_safetensors_with_official_keys_loads_when_untagged(tmp_path: Path) -> None:
    official = official_dit_tensors(stage2=True, seed=6)
    path = tmp_path / "stage2.safetensors"
    save_safetensors(engine_dict(official, extras=False), path, {})
    reference = load_dit(write_official(tmp_path / "stage2.pt", official))
    torch.testing.assert_close(run(load_dit(path), True), run(reference, True))


def test_dtype_argument_casts_weights_when_given(tmp_path: Path) -> None:
    path = write_official(tmp_path / "stage2.pt", official_dit_tensors(stage2=True))
    model = load_dit(path, TINY2, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in model.parameters())


def test_lora_matrices_without_original_weights_are_refused_when_loading(tmp_path: Path) -> None:
    official = official_dit_tensors(stage2=False)
    official["transformer.layers.0.attention.dense.matrix_A.0"] = torch.zeros(4, 128)
    with pytest.raises(BadCheckpoint, match="LoRA"):
        load_dit(write_official(tmp_path / "bad_lora.pt", official))


def test_structural_tensor_of_wrong_rank_is_refused_when_inferring_the_config(
    tmp_path: Path,
) -> None:
    official = official_dit_tensors(stage2=True)
    official["mixins.patch_embed.proj.weight"] = torch.zeros(128, 64)
    with pytest.raises(BadCheckpoint, match=r"mixins\.patch_embed\.proj\.weight has shape"):
        load_dit(write_official(tmp_path / "rank.pt", official))
