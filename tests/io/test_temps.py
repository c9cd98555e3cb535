"""Issue 20, item 3: a run never removes a live run's temporary output, wherever that run is.

The writers here are real processes: one in another PID namespace (`unshare -p`, what a second
container or `docs/distributed.md`'s shared folder gives), one under another host name
(`unshare -u`), killed ones. Their temporary files are judged by their lock, never by their PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import run_cli

from tests.media import make_clip
from vidrefine.errors import ExitCode
from vidrefine.io.temps import (
    FOREIGN_STALE_SECONDS,
    TEMP_MARKER,
    UNLOCKED_STALE_SECONDS,
    host_tag,
    remove_stale_temps,
)

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import sys, time
from pathlib import Path
from vidrefine.io.atomic import atomic_output
final, go = Path(sys.argv[1]), Path(sys.argv[2])
with atomic_output(final, overwrite=False) as temp:
    temp.write_bytes(b"partial")
    print(temp.name, flush=True)
    while not go.exists():
        time.sleep(0.02)
    temp.write_bytes(b"done")
"""


def _can(*command: str) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run([*command, "true"], capture_output=True).returncode == 0


needs_pid_namespace = pytest.mark.skipif(
    not _can("unshare", "-p", "-f", "--mount-proc"), reason="needs unshare -p (root, Linux)"
)
needs_uts_namespace = pytest.mark.skipif(
    not _can("unshare", "-u"), reason="needs unshare -u (root, Linux)"
)


# In the new namespace the writer gets a PID that no process has out here (where possible), so
# that a judge by PID would call it dead.
HIGH_PID = 'echo 2999999 > /proc/sys/kernel/ns_last_pid 2>/dev/null; "$@"'


def temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if TEMP_MARKER in p.name)


def start_writer(final: Path, *wrap: str) -> tuple[subprocess.Popen, Path]:
    """A process writing `final` through atomic_output (under `wrap`); returns it and its temp."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    go = final.with_name(final.name + ".go")
    proc = subprocess.Popen(
        [*wrap, sys.executable, "-c", WRITER, str(final), str(go)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    name = proc.stdout.readline().strip()
    assert name, "the writer did not start"
    return proc, final.parent / name


def finish(proc: subprocess.Popen, final: Path) -> int:
    final.with_name(final.name + ".go").touch()
    return proc.wait(timeout=30)


def age(path: Path, seconds: float) -> None:
    """Make `path` look untouched for `seconds`."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_temp_name_carries_the_writer_pid_and_host_when_an_output_is_written(tmp_path):
    proc, temp = start_writer(tmp_path / "out.mp4")
    try:
        assert f"{TEMP_MARKER}{proc.pid}@{host_tag()}-" in temp.name
    finally:
        assert finish(proc, tmp_path / "out.mp4") == 0
    assert (tmp_path / "out.mp4").read_bytes() == b"done" and temps(tmp_path) == []


@needs_pid_namespace
def test_a_run_keeps_the_temp_of_a_live_run_in_another_pid_namespace_when_both_share_a_folder(
    tmp_path,
):
    shared = tmp_path / "shared"
    shared.mkdir()
    clip = make_clip(tmp_path / "in.mp4", frames=3, size_hw=(48, 64))
    final = shared / "A.mp4"
    proc, temp = start_writer(
        final, "unshare", "-p", "-f", "--mount-proc", "sh", "-c", HIGH_PID, "-"
    )
    try:
        age(temp, 60)  # old enough to be judged; only its lock says it is alive
        code, text = run_cli(
            ["upscale", str(clip.path), "-c", "a", "-o", str(shared / "B.mp4"), "--offline"]
            + ["--weights", str(tmp_path / "none")]
        )
        assert code == ExitCode.MISSING_WEIGHTS, text
        assert temp.exists(), "the other namespace's live temporary output was removed"
    finally:
        rc = finish(proc, final)
    assert rc == 0 and final.read_bytes() == b"done"


@needs_uts_namespace
def test_another_machines_temp_is_kept_while_locked_and_long_after_its_writer_died(tmp_path):
    final = tmp_path / "A.mp4"
    rename = 'hostname far-node; exec "$@"'
    proc, temp = start_writer(final, "unshare", "-u", "sh", "-c", rename, "-")
    assert "@far-node-" in temp.name
    try:
        age(temp, FOREIGN_STALE_SECONDS + 60)
        assert remove_stale_temps(tmp_path) == [] and temp.exists()
    finally:
        kill(proc)
    age(temp, 60)  # dead, but another machine may only have lost the file server for a minute
    assert remove_stale_temps(tmp_path) == [] and temp.exists()
    age(temp, FOREIGN_STALE_SECONDS + 60)
    assert remove_stale_temps(tmp_path) == [temp]


def test_a_killed_writers_temp_is_removed_and_a_live_ones_kept_when_on_this_machine(tmp_path):
    live, live_temp = start_writer(tmp_path / "live.mp4")
    dead, dead_temp = start_writer(tmp_path / "dead.mp4")
    kill(dead)
    try:
        for path in (live_temp, dead_temp):
            age(path, 60)
        assert remove_stale_temps(tmp_path) == [dead_temp]
        assert live_temp.exists() and not dead_temp.exists()
    finally:
        assert finish(live, tmp_path / "live.mp4") == 0


def test_a_just_created_unlocked_temp_is_kept_when_its_writer_may_not_have_locked_it_yet(tmp_path):
    young = tmp_path / f".x{TEMP_MARKER}{os.getpid() + 1}@{host_tag()}-abcd_123.mp4"
    young.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [] and young.exists()
    age(young, 10)
    assert remove_stale_temps(tmp_path) == [young]


def test_a_writer_killed_a_moment_ago_is_cleaned_after_the_grace_and_a_live_one_kept_when_settling(
    tmp_path,
):
    # a page or batch restarted right after kill -9 (issue 20 item 6): the killed writer's temp
    # is younger than the creation grace, so one look keeps it; settling looks again after it
    live, live_temp = start_writer(tmp_path / "live.mp4")
    dead, dead_temp = start_writer(tmp_path / "dead.mp4")
    kill(dead)
    age(dead_temp, 0)  # written just before the kill
    try:
        assert remove_stale_temps(tmp_path) == [] and dead_temp.exists()
        assert remove_stale_temps(tmp_path, settle=True) == [dead_temp]
        assert live_temp.exists() and not dead_temp.exists()
    finally:
        assert finish(live, tmp_path / "live.mp4") == 0


@pytest.mark.parametrize("marker", ["{pid}-", ""], ids=["pid-only", "legacy"])
def test_an_unlocked_older_format_temp_is_removed_only_when_untouched_for_a_day(tmp_path, marker):
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # its PID is dead here, which proves nothing in another PID namespace
    old = tmp_path / f".x{TEMP_MARKER}{marker.format(pid=done.pid)}abcd_123.mp4"
    old.write_bytes(b"x")
    age(old, 3600)
    assert remove_stale_temps(tmp_path) == [] and old.exists()
    age(old, UNLOCKED_STALE_SECONDS + 60)
    assert remove_stale_temps(tmp_path) == [old]


def test_files_that_only_look_like_ours_are_left_alone_when_cleaning(tmp_path):
    keep = [
        tmp_path / ".notes.mp4",
        tmp_path / f"x{TEMP_MARKER}1@h-abcd_123.mp4",  # not hidden
        tmp_path / f".x{TEMP_MARKER}1@UPPER-abcd_123.mp4",  # not a host tag of ours
    ]
    for path in keep:
        path.write_bytes(b"x")
        age(path, UNLOCKED_STALE_SECONDS + 60)
    folder = tmp_path / f".d{TEMP_MARKER}1@h-abcd_123.mp4"
    folder.mkdir()
    link = tmp_path / f".l{TEMP_MARKER}1@h-abcd_123.mp4"
    link.symlink_to(keep[0])
    assert remove_stale_temps(tmp_path) == []
    assert all(p.exists() for p in [*keep, folder, link])
