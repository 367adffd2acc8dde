"""A full disk for one folder, simulated: ``os.write`` and ``os.fsync`` of any file in it fail
with ENOSPC (what the kernel answers on a full file system), everything else works.

Output files are written through ``os.write`` (``flakefinder.artifacts.atomic_open``), so this is
where a real full disk shows up; the check resolves each descriptor through /proc/self/fd.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _path_of(fd: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


@contextmanager
def full_disk(
    monkeypatch: pytest.MonkeyPatch, folder: Path, *, free_bytes: int = 0
) -> Iterator[list[str]]:
    """Inside the block, the disk of ``folder`` has ``free_bytes`` left: writes to files under
    it succeed until they are used up, then every write and fsync there fails with ENOSPC.
    Yields the paths whose writes were refused."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file a descriptor writes to")
    root = folder.resolve()
    refused: list[str] = []
    left = [free_bytes]
    full = [free_bytes <= 0]
    real_write, real_fsync = os.write, os.fsync

    def under(fd: int) -> Path | None:
        path = _path_of(fd)
        if path is not None and (path == root or root in path.parents):
            return path
        return None

    def write(fd: int, data: bytes) -> int:
        path = under(fd)
        if path is not None:
            if full[0] or len(data) > left[0]:
                full[0] = True
                refused.append(str(path))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= len(data)
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        path = under(fd)
        if path is not None and full[0]:
            refused.append(str(path))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        m.setattr(os, "fsync", fsync)
        yield refused
