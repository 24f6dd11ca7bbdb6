"""Files mflow creates are its owner's alone: directories 0700, files 0600, never through a
symlink someone else put in the way (SPEC §11).

Task logs hold what tasks print (SQL result rows among it), the store holds every run: only
what mflow itself creates gets these modes; a directory the user made (`/tmp`, a shared log
directory) keeps its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

# O_NOFOLLOW: a symlink planted where a log goes must not redirect a task's output.
_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW


def resolved(path: Path) -> Path:
    """`path.resolve()`, or the absolute path when it cannot be resolved (a symlink loop: the
    reading of the file says what is wrong, in one line)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def make_private_dir(path: Path) -> None:
    """`mkdir -p` where every directory created is 0700 (existing ones are left alone)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # made meanwhile by another process
            pass


def open_private(path: Path | str, flags: int) -> int:
    """os.open with mode 0600 for a file it creates, never following a symlink."""
    return os.open(path, flags | _OPEN, 0o600)


def create_private_file(path: Path) -> None:
    """Create an empty 0600 file unless something is there already."""
    try:
        os.close(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass


def open_log_for_reading(path: Path | str) -> BinaryIO:
    """A log opened to read it, never through a symlink (a log path's symlink must not show
    another file's content in `mflow logs` or a run's summary)."""
    return os.fdopen(os.open(path, os.O_RDONLY | _OPEN), "rb")
