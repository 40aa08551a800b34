"""Atomic outputs: write to a temporary file beside the target, then rename.

A run killed mid-write leaves either the old file or no file, never half a file.
Existing outputs are never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from medreg.errors import InputError


def default_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable(path: str | Path, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path after checking it may be (re)written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "expected a file path to write, found a directory")
    if path.exists() and not overwrite:
        raise InputError(path, "output already exists; refusing to overwrite (pass overwrite=True / --overwrite)")
    return path


def check_new_folder(path: str | Path) -> Path:
    """``path`` as a Path after checking it is a folder that does not exist yet or is empty (not created here)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(path, "expected a new or empty output folder, found files in it; choose a new one")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary name keeps the target's suffixes (``.nii.gz`` etc.) so libraries
    that pick a format from the extension write the right one.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, default_file_mode())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        if path.exists() and not overwrite:  # appeared while we were writing
            raise InputError(path, "output appeared while writing; refusing to overwrite")
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)
