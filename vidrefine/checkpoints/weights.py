"""Where the weight files are, and fetching the missing ones from the Hugging Face Hub.

A weights folder holds the official layout plus one transformers-format T5 folder, and the
captioner's model folder when `vidrefine caption` has been used::

    3d-vae.pt  stage1.pt  stage2.pt  t5-v1_1-xxl/  qwen3-vl-2b-instruct/

Folders are searched in this order, and a file is used from the first that has it:
`--weights DIR`, then `$VIDREFINE_WEIGHTS`, then the per-user cache
(`$XDG_CACHE_HOME/vidrefine/weights`, default `~/.cache/vidrefine/weights`). Missing files are
fetched into the first folder of that order. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vidrefine.checkpoints.hub import (
    Unreachable,
    absent_folders,
    fetch_announcer,
    fetch_weight,
    nonempty_file,
    tidy,
)
from vidrefine.errors import BadCheckpoint, MissingWeights

# Where each file comes from. Kept as constants so a moved file is a one-line fix.
FLASHVIDEO_REPO = "FoundationVision/FlashVideo"
VAE_REPO_PATH = "3d-vae.pt"
STAGE1_REPO_PATH = "stage1.pt"
STAGE2_REPO_PATH = "stage2.pt"
# The CogVideoX-5b diffusers repo ships exactly the t5-v1_1-xxl encoder (bf16 safetensors) and its
# sentencepiece tokenizer, without the 2x larger decoder half of google/t5-v1_1-xxl.
T5_REPO = "THUDM/CogVideoX-5b"
T5_ENCODER_SUBFOLDER = "text_encoder"
T5_TOKENIZER_SUBFOLDER = "tokenizer"
T5_ENCODER_FILES = (
    "config.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
)
T5_TOKENIZER_FILES = (
    "spiece.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
# The bundled captioner (vidrefine.captioners.qwen3vl): its model repository as is, one folder.
CAPTIONER_REPO = "Qwen/Qwen3-VL-2B-Instruct"
CAPTIONER_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
)

ENV_WEIGHTS = "VIDREFINE_WEIGHTS"


@dataclass(frozen=True)
class HubFile:
    """One file in a Hub repository and the name it gets locally."""

    repo_id: str
    repo_path: str
    local_name: str


@dataclass(frozen=True)
class WeightFile:
    """A weight entry of the weights folder: a single file, or a folder of several hub files.

    `key` is the short name of `vidrefine download --only`; `name` the entry in the folder.
    """

    key: str
    name: str
    size_gb: float  # approximate, for the download announcement
    sources: tuple[HubFile, ...]
    folder: bool = False

    @property
    def display_name(self) -> str:
        """The entry as users see it (folders end in '/')."""
        return self.name + "/" if self.folder else self.name

    def present_in(self, root: Path) -> bool:
        """True when `root` holds this entry complete (every file of a folder, none empty)."""
        entry = root / self.name
        if not self.folder:
            return nonempty_file(entry)
        if all(nonempty_file(entry / source.local_name) for source in self.sources):
            return True
        return _is_transformers_folder(entry)

    def empty_files_in(self, root: Path) -> list[Path]:
        """The files of this entry in `root` that exist but hold zero bytes (a failed copy)."""
        entry = root / self.name
        if self.folder:
            candidates = [entry / source.local_name for source in self.sources]
        else:
            candidates = [entry]
        return [p for p in candidates if p.is_file() and p.stat().st_size == 0]


def _is_transformers_folder(entry: Path) -> bool:
    """Any complete transformers model folder: config, weights and a tokenizer.

    Users may bring their own T5 folder (e.g. google/t5-v1_1-xxl saved with save_pretrained)
    rather than the files vidrefine fetches; a download that is still under way lives in
    `.partial/` and is not seen here.
    """
    if not nonempty_file(entry / "config.json"):
        return False
    tokenizer = [entry / "spiece.model", entry / "tokenizer.json"]
    if not any(nonempty_file(p) for p in tokenizer):
        return False
    for index in entry.glob("*.index.json"):  # sharded weights: every listed shard must be there
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        return all(nonempty_file(entry / shard) for shard in shards)
    weights = [*entry.glob("*.safetensors"), *entry.glob("pytorch_model*.bin")]
    return any(nonempty_file(p) for p in weights)


def _t5_sources() -> tuple[HubFile, ...]:
    encoder = [HubFile(T5_REPO, f"{T5_ENCODER_SUBFOLDER}/{n}", n) for n in T5_ENCODER_FILES]
    tokenizer = [HubFile(T5_REPO, f"{T5_TOKENIZER_SUBFOLDER}/{n}", n) for n in T5_TOKENIZER_FILES]
    return (*encoder, *tokenizer)


VAE = WeightFile("vae", "3d-vae.pt", 1.18, (HubFile(FLASHVIDEO_REPO, VAE_REPO_PATH, "3d-vae.pt"),))
STAGE1 = WeightFile(
    "stage1", "stage1.pt", 11.8, (HubFile(FLASHVIDEO_REPO, STAGE1_REPO_PATH, "stage1.pt"),)
)
STAGE2 = WeightFile(
    "stage2", "stage2.pt", 3.39, (HubFile(FLASHVIDEO_REPO, STAGE2_REPO_PATH, "stage2.pt"),)
)
T5 = WeightFile("t5", "t5-v1_1-xxl", 9.52, _t5_sources(), folder=True)
CAPTIONER = WeightFile(
    "captioner",
    "qwen3-vl-2b-instruct",
    4.27,
    tuple(HubFile(CAPTIONER_REPO, name, name) for name in CAPTIONER_FILES),
    folder=True,
)

ALL_WEIGHTS = (VAE, STAGE2, T5, STAGE1)  # what upscale and t2v use; `download` fetches these
OPTIONAL_WEIGHTS = (CAPTIONER,)  # only for `caption`/`--caption auto`: `download --only captioner`
UPSCALE_WEIGHTS = (VAE, STAGE2, T5)  # stage II needs no stage-I weights
T2V_WEIGHTS = (VAE, STAGE1, STAGE2, T5)
BY_KEY = {w.key: w for w in (*ALL_WEIGHTS, *OPTIONAL_WEIGHTS)}


def vidrefine_cache(kind: str, environ: Mapping[str, str] | None = None) -> Path:
    """Vidrefine's per-user cache folder `kind`: `$XDG_CACHE_HOME/vidrefine/KIND` or
    `~/.cache/vidrefine/KIND` (weights, resume jobs).
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vidrefine" / kind


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user weights cache: `$XDG_CACHE_HOME/vidrefine/weights` or `~/.cache/...`."""
    return vidrefine_cache("weights", environ)


def search_path(
    weights_dir: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Folders to look in, first wins: `--weights`, `$VIDREFINE_WEIGHTS`, the user cache."""
    env = os.environ if environ is None else environ
    folders: list[Path] = []
    if weights_dir:
        folders.append(Path(weights_dir).expanduser())
    if env.get(ENV_WEIGHTS):
        folders.append(Path(env[ENV_WEIGHTS]).expanduser())
    folders.append(user_cache_dir(env))
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def locate(files: Iterable[WeightFile], folders: Iterable[Path]) -> dict[str, Path | None]:
    """Map each entry's name to its path in the first folder that has it, or None."""
    folders = list(folders)
    found: dict[str, Path | None] = {}
    for weight in files:
        found[weight.name] = next(
            (folder / weight.name for folder in folders if weight.present_in(folder)), None
        )
    return found


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    """True when `HF_HUB_OFFLINE` asks huggingface_hub not to use the network."""
    env = os.environ if environ is None else environ
    return env.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def download_command(files: Iterable[WeightFile], weights_dir: str | Path | None = None) -> str:
    """The exact command that fetches `files` (into `weights_dir` when one was given)."""
    keys = ",".join(w.key for w in files)
    command = f"vidrefine download --only {keys}"
    if weights_dir:
        command += f" --weights {weights_dir}"
    return command


def total_gb(files: Iterable[WeightFile]) -> float:
    """Approximate download size of `files` in GB."""
    return sum(w.size_gb for w in files)


def resolve(
    files: Iterable[WeightFile],
    *,
    weights_dir: str | Path | None = None,
    offline: bool = False,
    fetch: bool = True,
    announce: Callable[[str], None] | None = None,
    advise_download: bool = True,
) -> dict[str, Path]:
    """Return {entry name: path} for `files`, fetching the missing ones from the Hub.

    Offline (`offline=True` or `HF_HUB_OFFLINE=1`), with `fetch=False`, or when the Hub cannot be
    reached, a missing entry raises `MissingWeights` naming it and the command that fetches it
    (`HubUnreachable` when the Hub does not answer: one quick check, no retry loop, nothing left
    in the weights folder). `advise_download=False` (for `vidrefine download` itself) leaves
    that command out of the messages of a failed fetch.
    """
    files = list(dict.fromkeys(files))
    folders = search_path(weights_dir)
    found = locate(files, folders)
    missing = [w for w in files if found[w.name] is None]
    if missing:
        empty_files = [p for w in missing for f in folders for p in w.empty_files_in(f)]
        if offline or not fetch or hub_offline():
            why = "offline" if offline or hub_offline() else "not fetching"
            if empty_files:
                raise BadCheckpoint(_empty_message(empty_files, missing, folders, weights_dir, why))
            raise MissingWeights(_missing_message(missing, folders, weights_dir, why))
        target = folders[0]
        say = fetch_announcer(missing, target, announce)
        created = absent_folders(target, missing)
        try:
            for done, weight in enumerate(missing):
                try:
                    found[weight.name] = fetch_weight(
                        weight,
                        target,
                        weights_dir=weights_dir,
                        advise=advise_download,
                        on_answer=say if done == 0 else None,
                    )
                except Unreachable as exc:
                    raise HubUnreachable(missing[done:], folders, weights_dir, str(exc)) from exc
        except BaseException:
            tidy(target, created)
            raise
    return {name: path for name, path in found.items() if path is not None}


class HubUnreachable(MissingWeights):
    """Weights are missing and the Hugging Face Hub cannot be reached to fetch them.

    `missing` are the entries not fetched, `target` the folder they would have gone into; the
    message advises the one command that fetches all of them (`vidrefine download` words its own).
    """

    def __init__(
        self,
        missing: list[WeightFile],
        folders: list[Path],
        weights_dir: str | Path | None,
        reason: str,
    ) -> None:
        self.missing, self.target, self.reason = list(missing), folders[0], reason
        names = ", ".join(w.display_name for w in missing)
        looked = ", ".join(str(f) for f in folders)
        super().__init__(
            f"missing weights {names} (looked in {looked}); the Hugging Face Hub cannot be "
            f"reached ({reason}), so nothing was fetched: run "
            f"`{download_command(missing, weights_dir)}` when online, or copy the files into "
            f"{self.target}"
        )


def _missing_message(
    missing: list[WeightFile], folders: list[Path], weights_dir: str | Path | None, why: str
) -> str:
    names = ", ".join(w.display_name for w in missing)
    looked = ", ".join(str(f) for f in folders)
    return (
        f"missing weights {names} (looked in {looked}); {why}, so nothing was fetched: "
        f"run `{download_command(missing, weights_dir)}` when online"
    )


def _empty_message(
    empty: list[Path],
    missing: list[WeightFile],
    folders: list[Path],
    weights_dir: str | Path | None,
    why: str,
) -> str:
    """A zero-byte file is not missing: it is damaged, and fetching it again replaces it."""
    files = ", ".join(str(p) for p in empty)
    verb = "is" if len(empty) == 1 else "are"
    absent = [w.display_name for w in missing if not any(w.empty_files_in(f) for f in folders)]
    also = f" (with {', '.join(absent)}, which is not there at all)" if absent else ""
    return (
        f"{files} {verb} empty (0 bytes: a download or copy that did not finish); {why}, so "
        f"nothing was fetched: run `{download_command(missing, weights_dir)}` to fetch "
        f"{'it' if len(empty) == 1 else 'them'} again{also}"
    )


def refetch_hint(path: Path) -> str:
    """How to get a weight file again, by its name: `vidrefine download --only KEY`."""
    for weight in BY_KEY.values():
        if path.name == weight.name or path.parent.name == weight.name:
            return f"fetch it again with `vidrefine download --only {weight.key}`"
    return "fetch or copy it again (`vidrefine download` fetches the official files)"


__all__ = [
    "ALL_WEIGHTS",
    "BY_KEY",
    "CAPTIONER",
    "STAGE1",
    "STAGE2",
    "T2V_WEIGHTS",
    "T5",
    "UPSCALE_WEIGHTS",
    "VAE",
    "OPTIONAL_WEIGHTS",
    "HubFile",
    "HubUnreachable",
    "WeightFile",
    "download_command",
    "locate",
    "refetch_hint",
    "resolve",
    "search_path",
    "user_cache_dir",
]
