"""Where the weight files are, and fetching the missing ones from the Hugging Face Hub.

A weights folder holds the official layout plus one transformers-format T5 folder::

    3d-vae.pt  stage1.pt  stage2.pt  t5-v1_1-xxl/

Folders are searched in this order, and a file is used from the first that has it:
`--weights DIR`, then `$VIDREFINE_WEIGHTS`, then the per-user cache
(`$XDG_CACHE_HOME/vidrefine/weights`, default `~/.cache/vidrefine/weights`). Missing files are
fetched into the first folder of that order. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidrefine.errors import BadCheckpoint, MissingWeights, OutputNotWritable

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

ENV_WEIGHTS = "VIDREFINE_WEIGHTS"
PARTIAL_DIR = ".partial"  # hub downloads land (and resume) here before moving into place


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
            return _nonempty_file(entry)
        if all(_nonempty_file(entry / source.local_name) for source in self.sources):
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
    if not _nonempty_file(entry / "config.json"):
        return False
    tokenizer = [entry / "spiece.model", entry / "tokenizer.json"]
    if not any(_nonempty_file(p) for p in tokenizer):
        return False
    for index in entry.glob("*.index.json"):  # sharded weights: every listed shard must be there
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        return all(_nonempty_file(entry / shard) for shard in shards)
    weights = [*entry.glob("*.safetensors"), *entry.glob("pytorch_model*.bin")]
    return any(_nonempty_file(p) for p in weights)


def _nonempty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


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

ALL_WEIGHTS = (VAE, STAGE2, T5, STAGE1)
UPSCALE_WEIGHTS = (VAE, STAGE2, T5)  # stage II needs no stage-I weights
T2V_WEIGHTS = (VAE, STAGE1, STAGE2, T5)
BY_KEY = {w.key: w for w in ALL_WEIGHTS}


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
        _announce_fetch(missing, target, announce)
        created = _absent_folders(target, missing)
        try:
            for done, weight in enumerate(missing):
                try:
                    found[weight.name] = fetch_weight(
                        weight,
                        target,
                        weights_dir=weights_dir,
                        advise=advise_download,
                        fast=done == 0,
                    )
                except _Unreachable as exc:
                    raise HubUnreachable(missing[done:], folders, weights_dir, str(exc)) from exc
        except BaseException:
            _tidy(target, created)
            raise
    return {name: path for name, path in found.items() if path is not None}


HUB_CHECK_TIMEOUT_S = 5.0  # the first request's timeout: it decides whether the Hub answers


class _Unreachable(Exception):
    """The Hub could not be reached while a file was being fetched (the reason is the text)."""


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


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def _no_hub_retries() -> Iterator[None]:
    """For the first request only: huggingface_hub's metadata HEAD without its retry loop (five
    tries over about 25 s, a warning line each) and with a short timeout, so that a Hub that
    cannot be reached fails at once. Without that hook (another huggingface_hub) nothing changes.
    """
    from huggingface_hub import file_download

    original = getattr(file_download, "get_hf_file_metadata", None)
    if original is None:
        yield
        return

    def once(*args: Any, **kwargs: Any) -> Any:
        kwargs["retry_on_errors"] = False
        kwargs["timeout"] = min(kwargs.get("timeout") or HUB_CHECK_TIMEOUT_S, HUB_CHECK_TIMEOUT_S)
        return original(*args, **kwargs)

    file_download.get_hf_file_metadata = once
    try:
        yield
    finally:
        file_download.get_hf_file_metadata = original


def _is_connection_error(exc: BaseException) -> bool:
    """A failure to reach the server at all (refused, reset, timed out, no name), whatever the
    HTTP library's class for it.
    """
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    names = {"TransportError", "NetworkError", "TimeoutException", "RemoteProtocolError"}
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _absent_folders(target: Path, missing: list[WeightFile]) -> list[Path]:
    """Folders a fetch into `target` may create that do not exist yet (deepest first)."""
    candidates = [target / w.name for w in missing if w.folder]
    candidates.append(target / PARTIAL_DIR)
    probe = target
    while probe != probe.parent:
        candidates.append(probe)
        probe = probe.parent
    return [p for p in candidates if not p.exists()]


_HUB_BOOKKEEPING = {"CACHEDIR.TAG", ".gitignore"}  # what huggingface_hub writes in a new cache


def _tidy(target: Path, created: list[Path]) -> None:
    """After a failed fetch: remove huggingface_hub's `.lock` files and the empty folders it or
    we made under `target` (partial downloads, which a retry resumes, are kept).
    """
    partial = target / PARTIAL_DIR
    if partial.is_dir():
        for lock in partial.rglob("*.lock"):
            lock.unlink(missing_ok=True)
        files = [p for p in partial.rglob("*") if not p.is_dir()]
        if all(p.name in _HUB_BOOKKEEPING for p in files):  # no partial download to resume
            shutil.rmtree(partial, ignore_errors=True)
        folders = sorted((p for p in partial.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, partial]:
            _rmdir_if_empty(folder)
    for folder in created:
        _rmdir_if_empty(folder)


def _rmdir_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


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
    for weight in ALL_WEIGHTS:
        if path.name == weight.name or path.parent.name == weight.name:
            return f"fetch it again with `vidrefine download --only {weight.key}`"
    return "fetch or copy it again (`vidrefine download` fetches the official files)"


def _announce_fetch(
    missing: list[WeightFile], target: Path, announce: Callable[[str], None] | None
) -> None:
    parts = ", ".join(f"{w.display_name} ({w.size_gb:.1f} GB)" for w in missing)
    need_gb = total_gb(missing)
    message = (
        f"fetching {len(missing)} weight entr{'y' if len(missing) == 1 else 'ies'} "
        f"({need_gb:.1f} GB) from the Hugging Face Hub into {target}: {parts}"
    )
    free_gb = _free_gb(target)
    if free_gb is not None and free_gb < need_gb:
        message += f" (warning: only {free_gb:.1f} GB free there)"
    if announce is not None:
        announce(message)


def _free_gb(folder: Path) -> float | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free / 1e9
    except OSError:
        return None


def fetch_weight(
    weight: WeightFile,
    target: Path,
    *,
    weights_dir: str | Path | None,
    advise: bool = True,
    fast: bool = False,
) -> Path:
    """Download `weight` into `target` (resumable) and return its final path.

    Each hub file is fetched into `target/.partial/` (where `hf_hub_download` resumes an
    interrupted transfer) and moved into place only when complete, so a file under its final
    name is always whole. The T5 encoder and tokenizer subfolders are flattened into one folder.
    """
    entry = target / weight.name
    try:
        (entry if weight.folder else target).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create weights folder {target}: {exc.strerror}") from exc
    for source in weight.sources:
        final = entry / source.local_name if weight.folder else entry
        if _nonempty_file(final):
            continue
        downloaded = _hub_download(source, target / PARTIAL_DIR, weight, weights_dir, advise, fast)
        fast = False
        os.replace(downloaded, final)
    return entry


def _hub_download(
    source: HubFile,
    partial: Path,
    weight: WeightFile,
    weights_dir: str | Path | None,
    advise: bool = True,
    fast: bool = False,
) -> Path:
    """One hub file into `partial`; huggingface_hub's retry lines are not shown (one line each
    failure is vidrefine's). Losing the connection raises `_Unreachable`; `fast` (the first file
    of a fetch) asks the Hub once, with a short timeout and no retries.
    """
    import logging

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)
    try:
        with _no_hub_retries() if fast else contextlib.nullcontext():
            path = hf_hub_download(source.repo_id, source.repo_path, local_dir=partial)
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        why = _first_line(cause) if cause is not None else "the connection failed"
        raise _Unreachable(f"{_hub_endpoint()}: {why}") from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise _Unreachable(f"{_hub_endpoint()}: {_first_line(exc)}") from exc
        if not isinstance(exc, HfHubHTTPError | OSError):
            raise
        reason = _first_line(exc)
        then = (
            f"then run `{download_command([weight], weights_dir)}`"
            if advise
            else "then retry, or copy the files into the folder"
        )
        raise MissingWeights(
            f"could not fetch {source.repo_id}/{source.repo_path} for {weight.display_name} "
            f"({reason}); check the network and HF_ENDPOINT/HF_TOKEN, {then}"
        ) from exc
    finally:
        hub_logger.setLevel(level)
    return Path(path)


__all__ = [
    "ALL_WEIGHTS",
    "BY_KEY",
    "STAGE1",
    "STAGE2",
    "T2V_WEIGHTS",
    "T5",
    "UPSCALE_WEIGHTS",
    "VAE",
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
