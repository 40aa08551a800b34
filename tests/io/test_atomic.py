import os

import pytest

from medreg.errors import InputError
from medreg.io.atomic import atomic_path, write_text_atomic


def test_atomic_write_refuses_overwrite_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    write_text_atomic(target, "first")
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_text_atomic(target, "second")
    with pytest.raises(RuntimeError):
        with atomic_path(target, overwrite=True) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]  # no temp file left behind
    write_text_atomic(target, "third", overwrite=True)
    assert target.read_text() == "third"


def test_atomic_outputs_have_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="found a directory"):
        write_text_atomic(tmp_path, "x")


def test_check_new_folder_accepts_new_and_empty_folders_only(tmp_path):
    from medreg.io.atomic import check_new_folder

    assert check_new_folder(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    check_new_folder(tmp_path / "empty")
    (tmp_path / "empty" / "a.csv").write_text("x")
    for bad in (tmp_path / "empty", tmp_path / "empty" / "a.csv"):
        with pytest.raises(InputError, match="new or empty output folder"):
            check_new_folder(bad)
