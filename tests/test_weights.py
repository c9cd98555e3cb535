"""Weights discovery order and the offline behaviour; nothing here reaches the network."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from click.testing import CliRunner

from vidrefine.checkpoints import weights
from vidrefine.checkpoints.weights import (
    STAGE1,
    STAGE2,
    T5,
    UPSCALE_WEIGHTS,
    VAE,
    locate,
    resolve,
    search_path,
    user_cache_dir,
)
from vidrefine.cli import cli
from vidrefine.errors import ExitCode, MissingWeights


@pytest.fixture
def no_hub_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to download."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"hf_hub_download called with {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture
def folders(tmp_path, monkeypatch) -> dict[str, Path]:
    """Three separate weight folders: --weights, $VIDREFINE_WEIGHTS and the XDG cache."""
    flag, env, xdg = tmp_path / "flag", tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv("VIDREFINE_WEIGHTS", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    return {"flag": flag, "env": env, "cache": xdg / "vidrefine" / "weights"}


def put(folder: Path, *entries: weights.WeightFile) -> None:
    """Write tiny stand-ins of the given entries (content does not matter for discovery)."""
    for entry in entries:
        if entry.folder:
            for source in entry.sources:
                (folder / entry.name).mkdir(parents=True, exist_ok=True)
                (folder / entry.name / source.local_name).write_bytes(b"x")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / entry.name).write_bytes(b"x")


def test_search_order_is_flag_then_env_then_cache_when_all_are_set(folders):
    assert search_path(folders["flag"]) == [folders["flag"], folders["env"], folders["cache"]]
    assert search_path(None) == [folders["env"], folders["cache"]]


def test_cache_defaults_to_home_dot_cache_when_xdg_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_cache_dir() == tmp_path / ".cache" / "vidrefine" / "weights"


def test_first_folder_holding_a_file_wins_when_several_hold_it(folders):
    put(folders["cache"], VAE, STAGE2)
    put(folders["env"], VAE)
    put(folders["flag"], STAGE2)
    found = locate([VAE, STAGE2], search_path(folders["flag"]))
    assert found["3d-vae.pt"] == folders["env"] / "3d-vae.pt"
    assert found["stage2.pt"] == folders["flag"] / "stage2.pt"


def test_each_file_comes_from_its_own_folder_when_spread_out(folders, no_hub_calls):
    put(folders["cache"], VAE)
    put(folders["env"], T5)
    put(folders["flag"], STAGE2)
    found = resolve(UPSCALE_WEIGHTS, weights_dir=folders["flag"], offline=True)
    assert found == {
        "3d-vae.pt": folders["cache"] / "3d-vae.pt",
        "stage2.pt": folders["flag"] / "stage2.pt",
        "t5-v1_1-xxl": folders["env"] / "t5-v1_1-xxl",
    }


def test_upscale_needs_no_stage1_weights_when_resolving(folders, no_hub_calls):
    put(folders["cache"], VAE, STAGE2, T5)
    found = resolve(UPSCALE_WEIGHTS, offline=True)
    assert "stage1.pt" not in found
    with pytest.raises(MissingWeights, match="stage1.pt"):
        resolve(weights.T2V_WEIGHTS, offline=True)


def test_incomplete_t5_folder_counts_as_missing_when_a_shard_is_absent(folders):
    put(folders["cache"], T5)
    (folders["cache"] / T5.name / "model-00002-of-00002.safetensors").unlink()
    assert locate([T5], [folders["cache"]])["t5-v1_1-xxl"] is None


def test_empty_file_counts_as_missing_when_a_download_left_zero_bytes(folders):
    folders["cache"].mkdir(parents=True)
    (folders["cache"] / "stage2.pt").write_bytes(b"")
    assert locate([STAGE2], [folders["cache"]])["stage2.pt"] is None


def test_offline_error_names_the_missing_files_and_the_download_command_when_offline(
    folders, no_hub_calls
):
    put(folders["cache"], VAE)
    with pytest.raises(MissingWeights) as err:
        resolve(UPSCALE_WEIGHTS, weights_dir=folders["flag"], offline=True)
    message = str(err.value)
    assert "\n" not in message
    assert "stage2.pt" in message and "t5-v1_1-xxl/" in message
    assert "3d-vae.pt" not in message
    assert f"vidrefine download --only stage2,t5 --weights {folders['flag']}" in message


def test_hf_hub_offline_is_honoured_when_offline_is_not_passed(folders, no_hub_calls, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeights, match="offline"):
        resolve([STAGE1], offline=False)


def test_fetch_false_never_downloads_when_online(folders, no_hub_calls, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(MissingWeights, match="vidrefine download --only vae"):
        resolve([VAE], fetch=False)


def test_download_command_exits_with_missing_weights_code_when_offline(folders, no_hub_calls):
    result = CliRunner().invoke(cli, ["download", "--only", "stage2", "--weights", "w"])
    assert result.exit_code == ExitCode.MISSING_WEIGHTS
    assert result.stderr.count("\n") == 1
    assert "vidrefine download --only stage2 --weights w" in result.stderr


def test_download_reports_present_files_without_fetching_when_all_are_there(folders, no_hub_calls):
    put(folders["env"], VAE, STAGE2, T5, STAGE1)
    result = CliRunner().invoke(cli, ["download"])
    assert result.exit_code == 0, result.output
    assert str(folders["env"]) in result.stdout


def test_fetch_flattens_t5_and_moves_files_into_place_when_the_hub_delivers(folders, monkeypatch):
    """A stand-in for the Hub that writes where hf_hub_download would (local_dir/repo_path)."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls: list[str] = []

    def fake_download(repo_id, filename, *, local_dir, **kwargs):
        calls.append(f"{repo_id}/{filename}")
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    put(folders["env"], VAE)
    announced: list[str] = []
    found = resolve(UPSCALE_WEIGHTS, weights_dir=folders["flag"], announce=announced.append)
    assert found["3d-vae.pt"] == folders["env"] / "3d-vae.pt"  # present: not fetched
    assert found["stage2.pt"] == folders["flag"] / "stage2.pt"  # fetched into the first folder
    assert sorted(p.name for p in (folders["flag"] / "t5-v1_1-xxl").iterdir()) == sorted(
        s.local_name for s in T5.sources
    )
    assert "FoundationVision/FlashVideo/3d-vae.pt" not in calls
    assert f"{weights.T5_REPO}/text_encoder/config.json" in calls
    assert len(announced) == 1 and "GB" in announced[0] and "stage2.pt" in announced[0]
