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
def full_disk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Iterator[list[str]]:
    """Inside the block, writes to files under ``folder`` fail with ENOSPC; yields the paths
    whose writes were refused."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file a descriptor writes to")
    root = folder.resolve()
    refused: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def on_full_disk(fd: int) -> bool:
        path = _path_of(fd)
        if path is not None and (path == root or root in path.parents):
            refused.append(str(path))
            return True
        return False

    def write(fd: int, data: bytes) -> int:
        if on_full_disk(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if on_full_disk(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        m.setattr(os, "fsync", fsync)
        yield refused
