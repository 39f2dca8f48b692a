"""Writing files so that a fault never destroys what the user already had: every file nsm
writes goes to a temporary file in the same folder, is flushed and synced, and only then
replaces the target (``os.replace``, atomic on POSIX and Windows). A save that fails or is
killed half-way leaves the previous file as it was (and at worst a hidden ``.*.tmp`` file
beside it). Output paths that are symbolic links are refused: writing through one would
create or overwrite a file somewhere else."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write", "check_output_path"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import (os.umask can only be read by setting it): new files get the usual
# permissions instead of mkstemp's 0600.
_NEW_FILE_MODE = 0o666 & ~_umask()


def check_output_path(path: Any, what: str = "output path") -> str:
    """``path`` as a string, refusing a symbolic link (dangling or not) with a clear message."""
    path = os.fspath(path)
    if os.path.islink(path):
        raise ValueError(
            f"{what} {path} is a symbolic link; nsm does not write through links (the file "
            "would be created or overwritten where the link points): pass the path of a "
            "regular file, or remove the link"
        )
    return path


@contextlib.contextmanager
def atomic_write(path: Any, binary: bool = False) -> Iterator[IO[Any]]:
    """A file object whose content replaces ``path`` when the block ends without an error.

    Examples
    --------
    >>> import os, tempfile
    >>> from nsm._files import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_write(path) as f:
    ...     _ = f.write("done")
    >>> with open(path) as f:
    ...     f.read()
    'done'
    """
    target = check_output_path(path)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        mode = os.stat(target).st_mode & 0o7777 if os.path.exists(target) else _NEW_FILE_MODE
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
