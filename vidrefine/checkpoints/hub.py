"""Fetching official weights from the Hugging Face Hub: into a `.partial/` folder first, one
quick first request that fails at once when the Hub cannot be reached (no retry loop, no log
lines), and nothing of ours left behind after a failure. `weights.resolve` decides what to fetch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidrefine.errors import MissingWeights, OutputNotWritable, first_line

if TYPE_CHECKING:
    from vidrefine.checkpoints.weights import HubFile, WeightFile

PARTIAL_DIR = ".partial"  # hub downloads land (and resume) here before moving into place


def nonempty_file(path: Path) -> bool:
    """A file with at least one byte (an empty one is an interrupted download or copy)."""
    return path.is_file() and path.stat().st_size > 0


HUB_CHECK_TIMEOUT_S = 5.0  # the first request's timeout: it decides whether the Hub answers


class Unreachable(Exception):
    """The Hub could not be reached while a file was being fetched (the reason is the text)."""


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@contextlib.contextmanager
def _first_request(answered: Callable[[], None]) -> Iterator[None]:
    """For the first request only: huggingface_hub's metadata HEAD without its retry loop (five
    tries over about 25 s, a warning line each) and with a short timeout, so that a Hub that
    cannot be reached fails at once; `answered` runs as soon as that HEAD succeeds (before any
    byte is transferred). Without that hook (another huggingface_hub) `answered` runs at once.
    """
    from huggingface_hub import file_download

    original = getattr(file_download, "get_hf_file_metadata", None)
    if original is None:
        answered()
        yield
        return

    def once(*args: Any, **kwargs: Any) -> Any:
        kwargs["retry_on_errors"] = False
        kwargs["timeout"] = min(kwargs.get("timeout") or HUB_CHECK_TIMEOUT_S, HUB_CHECK_TIMEOUT_S)
        metadata = original(*args, **kwargs)
        answered()
        return metadata

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


def absent_folders(target: Path, missing: list[WeightFile]) -> list[Path]:
    """Folders a fetch into `target` may create that do not exist yet (deepest first)."""
    candidates = [target / w.name for w in missing if w.folder]
    candidates.append(target / PARTIAL_DIR)
    probe = target
    while probe != probe.parent:
        candidates.append(probe)
        probe = probe.parent
    return [p for p in candidates if not p.exists()]


_HUB_BOOKKEEPING = {"CACHEDIR.TAG", ".gitignore"}  # what huggingface_hub writes in a new cache


def tidy(target: Path, created: list[Path]) -> None:
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


def fetch_announcer(
    missing: list[WeightFile], target: Path, announce: Callable[[str], None] | None
) -> Callable[[], None]:
    """A callable that says, once, what is about to be fetched, how big it is, and whether the
    folder has the room. `resolve` hands it to the first download, which calls it when the Hub
    has answered: an unreachable Hub gets the one error line, not this line before it.
    """
    parts = ", ".join(f"{w.display_name} ({w.size_gb:.1f} GB)" for w in missing)
    need_gb = sum(w.size_gb for w in missing)
    message = (
        f"fetching {len(missing)} weight entr{'y' if len(missing) == 1 else 'ies'} "
        f"({need_gb:.1f} GB) from the Hugging Face Hub into {target}: {parts}"
    )
    free_gb = _free_gb(target)
    if free_gb is not None and free_gb < need_gb:
        message += f" (warning: only {free_gb:.1f} GB free there)"
    said: list[str] = []

    def say() -> None:
        if announce is not None and not said:
            said.append(message)
            announce(message)

    return say


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
    on_answer: Callable[[], None] | None = None,
) -> Path:
    """Download `weight` into `target` (resumable) and return its final path.

    Each hub file is fetched into `target/.partial/` (where `hf_hub_download` resumes an
    interrupted transfer) and moved into place only when complete, so a file under its final
    name is always whole. The T5 encoder and tokenizer subfolders are flattened into one folder.
    `on_answer` (for the first file of a fetch) asks the Hub once, quickly, and runs when it
    answers (at the latest when the file is in).
    """
    entry = target / weight.name
    try:
        (entry if weight.folder else target).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create weights folder {target}: {exc.strerror}") from exc
    for source in weight.sources:
        final = entry / source.local_name if weight.folder else entry
        if nonempty_file(final):
            continue
        downloaded = _hub_download(
            source, target / PARTIAL_DIR, weight, weights_dir, advise, on_answer
        )
        if on_answer is not None:
            on_answer()
        on_answer = None
        os.replace(downloaded, final)
    return entry


def _hub_download(
    source: HubFile,
    partial: Path,
    weight: WeightFile,
    weights_dir: str | Path | None,
    advise: bool = True,
    on_answer: Callable[[], None] | None = None,
) -> Path:
    """One hub file into `partial`; huggingface_hub's retry lines are not shown (one line each
    failure is vidrefine's). Losing the connection raises `Unreachable`; with `on_answer` (the
    first file of a fetch) the Hub is asked once, with a short timeout and no retries, and
    `on_answer` runs when it answers.
    """
    import logging

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from vidrefine.checkpoints import weights  # the table's command words (imports this module)

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)
    try:
        with _first_request(on_answer) if on_answer else contextlib.nullcontext():
            path = hf_hub_download(source.repo_id, source.repo_path, local_dir=partial)
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        why = first_line(cause) if cause is not None else "the connection failed"
        raise Unreachable(f"{_hub_endpoint()}: {why}") from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise Unreachable(f"{_hub_endpoint()}: {first_line(exc)}") from exc
        if not isinstance(exc, HfHubHTTPError | OSError):
            raise
        reason = first_line(exc)
        then = (
            f"then run `{weights.download_command([weight], weights_dir)}`"
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
