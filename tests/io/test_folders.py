"""io.folders: a made folder with subfolders is replaced only when every file in it is ours."""

from __future__ import annotations

import pytest

from vidrefine.errors import OutputExists
from vidrefine.io.folders import REPORT, FolderKind, atomic_folder

KIND = FolderKind("test export", "a folder vidrefine made", "the test")


def make(folder, *, overwrite=False, kind=KIND, text="v1"):
    with atomic_folder(folder, overwrite=overwrite, kind=kind) as temp:
        (temp / "a" / "b").mkdir(parents=True)
        (temp / "a" / "b" / "w.bin").write_text(text)
        (temp / "top.json").write_text(text)


def test_a_made_folder_with_subfolders_is_replaced_whole_when_overwrite_is_given(tmp_path):
    folder = tmp_path / "out"
    make(folder)
    with pytest.raises(OutputExists, match="--overwrite"):
        make(folder, text="v2")
    make(folder, overwrite=True, text="v2")
    assert (folder / "a" / "b" / "w.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("stranger", ["a/b/mine.txt", "a/notes/x.txt", "link"])
def test_a_made_folder_is_never_replaced_when_it_holds_a_file_of_someone_else(tmp_path, stranger):
    folder = tmp_path / "out"
    make(folder)
    path = folder / stranger
    if stranger == "link":
        path.symlink_to(tmp_path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    with pytest.raises(OutputExists, match="did not write") as raised:
        make(folder, overwrite=True, text="v2")
    assert "--overwrite" not in str(raised.value)
    assert (folder / "top.json").read_text() == "v1" and (path.is_symlink() or path.exists())


def test_a_folder_made_as_another_kind_is_not_ours_to_replace(tmp_path):
    folder = tmp_path / "out"
    make(folder, kind=REPORT)
    with pytest.raises(OutputExists, match="did not write"):
        make(folder, overwrite=True)
    assert (folder / "top.json").read_text() == "v1"
