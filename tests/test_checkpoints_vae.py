"""load_vae / convert_vae / `vidrefine convert` on tiny files in the official and other layouts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from vae_fixtures import TINY_WIDTHS, to_diffusers_state, write_official_vae

from vidrefine.checkpoints import convert_vae, load_vae
from vidrefine.cli.convert import command, detect_kind
from vidrefine.errors import BadCheckpoint, BadInput, MissingWeights, OutputExists, VidrefineError


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("official") / "3d-vae.pt"
    return path, write_official_vae(path, seed=5)


def _same_weights(vae: torch.nn.Module, tensors: dict) -> None:
    state = vae.state_dict()
    assert set(state) == set(tensors)
    for key, value in tensors.items():
        torch.testing.assert_close(state[key].float(), value, rtol=0, atol=0, msg=key)


def test_official_file_loads_with_loss_keys_dropped_when_keys_follow_the_spec(official) -> None:
    path, tensors = official
    vae = load_vae(path)
    _same_weights(vae, tensors)
    assert vae.config.block_out_channels == TINY_WIDTHS
    assert vae.config.layers_per_block == 3 and vae.config.latent_channels == 16


def test_architecture_is_inferred_from_shapes_when_widths_differ(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    tensors = write_official_vae(path, seed=1, widths=(32, 32, 64, 64))
    vae = load_vae(path, dtype=torch.bfloat16)
    assert vae.config.block_out_channels == (32, 32, 64, 64)
    assert next(vae.parameters()).dtype == torch.bfloat16
    assert set(vae.state_dict()) == set(tensors)


def test_missing_file_raises_missing_weights_when_path_is_absent(tmp_path: Path) -> None:
    with pytest.raises(MissingWeights):
        load_vae(tmp_path / "3d-vae.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_raises_bad_checkpoint_when_cut_short(official, tmp_path, suffix) -> None:
    path, tensors = official
    source = path
    if suffix == ".safetensors":
        source = tmp_path / "full.safetensors"
        save_file(tensors, str(source))
    cut = tmp_path / f"cut{suffix}"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadCheckpoint):
        load_vae(cut)


def test_wrong_keys_are_named_when_one_is_renamed(official, tmp_path: Path) -> None:
    _, tensors = official
    bad = dict(tensors)
    bad["encoder.down.0.block.1.conv1.kernel.weight"] = bad.pop(
        "encoder.down.0.block.1.conv1.conv.weight"
    )
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(BadCheckpoint) as info:
        load_vae(path)
    assert "encoder.down.0.block.1.conv1.conv.weight" in str(info.value)
    assert "encoder.down.0.block.1.conv1.kernel.weight" in str(info.value)


def test_wrong_shape_is_named_when_a_tensor_is_resized(official, tmp_path: Path) -> None:
    _, tensors = official
    bad = dict(tensors)
    bad["decoder.up.1.upsample.conv.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(BadCheckpoint, match="decoder.up.1.upsample.conv.weight"):
        load_vae(path)


def test_stage_checkpoint_is_refused_clearly_when_passed_as_the_vae(tmp_path: Path) -> None:
    path = tmp_path / "stage2.pt"
    module = {
        "model.diffusion_model.transformer.layers.0.attention.dense.weight": torch.zeros(4, 4),
        "model.diffusion_model.mixins.patch_embed.proj.weight": torch.zeros(4, 16, 2, 2),
    }
    torch.save({"module": module}, path)
    with pytest.raises(BadCheckpoint, match="stage checkpoint"):
        load_vae(path)
    assert detect_kind(path) == "dit"


def _write_diffusers_folder(folder: Path, tensors: dict) -> None:
    folder.mkdir()
    config = {
        "_class_name": "AutoencoderKLCogVideoX",
        "block_out_channels": list(TINY_WIDTHS),
        "latent_channels": 16,
        "layers_per_block": 3,
        "norm_num_groups": 32,
        "norm_eps": 1e-6,
        "temporal_compression_ratio": 4,
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file(to_diffusers_state(tensors), str(folder / "diffusion_pytorch_model.safetensors"))


def test_diffusers_folder_loads_the_same_weights_when_up_blocks_are_reversed(
    official, tmp_path: Path
) -> None:
    _, tensors = official
    folder = tmp_path / "vae"
    _write_diffusers_folder(folder, tensors)
    _same_weights(load_vae(folder), tensors)


def test_diffusers_save_pretrained_round_trips_when_diffusers_is_installed(
    official, tmp_path: Path
) -> None:
    diffusers = pytest.importorskip("diffusers")
    _, tensors = official
    model = diffusers.AutoencoderKLCogVideoX(block_out_channels=TINY_WIDTHS, latent_channels=16)
    model.load_state_dict(to_diffusers_state(tensors), strict=True)
    model.save_pretrained(tmp_path / "saved")
    _same_weights(load_vae(tmp_path / "saved"), tensors)


def test_own_safetensors_round_trip_keeps_weights_and_config_when_converted(
    official, tmp_path: Path
) -> None:
    path, tensors = official
    dst = tmp_path / "vae.safetensors"
    config = convert_vae(path, dst)
    vae = load_vae(dst)
    _same_weights(vae, tensors)
    assert vae.config == config
    with pytest.raises(OutputExists):
        convert_vae(path, dst)
    with pytest.raises(BadInput, match="safetensors"):
        convert_vae(path, tmp_path / "vae.pt")


def test_other_vidrefine_files_are_refused_when_passed_as_the_vae(tmp_path: Path) -> None:
    path = tmp_path / "dit.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"vidrefine_format": "dit"})
    with pytest.raises(BadCheckpoint, match="'dit'"):
        load_vae(path)


def test_cli_convert_writes_a_loadable_file_when_given_the_official_vae(
    official, tmp_path: Path
) -> None:
    path, tensors = official
    dst = tmp_path / "out.safetensors"
    result = CliRunner().invoke(command, [str(path), str(dst)])
    assert result.exit_code == 0, result.output
    assert "wrote VAE" in result.output
    _same_weights(load_vae(dst), tensors)
    again = CliRunner().invoke(command, [str(path), str(dst), "--kind", "vae"])
    assert isinstance(again.exception, OutputExists)


def test_cli_convert_dit_kind_fails_clearly_when_given_a_vae(official, tmp_path: Path) -> None:
    path, _ = official
    result = CliRunner().invoke(
        command, [str(path), str(tmp_path / "d.safetensors"), "--kind", "dit"]
    )
    assert isinstance(result.exception, VidrefineError)
    if importlib.util.find_spec("vidrefine.checkpoints.dit") is None:
        assert isinstance(result.exception, BadInput)
        assert "not supported" in str(result.exception)
