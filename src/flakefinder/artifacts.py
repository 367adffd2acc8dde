"""Torch-free helpers for self-describing artifacts (model folders, setup profiles).

sha256 of files and of canonical JSON, stable JSON writing and dataset hashes. numpy and the
standard library only, so that both ``detect.model_folder`` and ``calibration.profile`` use the
same code without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the bytes of the file at ``path``."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(data: Any) -> str:
    """JSON text with sorted keys and no insignificant white space: what a content hash covers."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def sha256_json(data: Any) -> str:
    """Hex sha256 of :func:`canonical_json` of ``data``."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def write_json_atomic(path: str | Path, data: Mapping[str, Any] | list[Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temporary file and a rename.

    A crash never leaves a half-written file at ``path``.
    """
    target = Path(path)
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=str(target.parent or Path(".")))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dataset_hash(paths: Iterable[str | Path]) -> str:
    """sha256 over the given files (folders expanded recursively), in a stable order.

    Each file contributes its name relative to the argument it came from and its bytes, so the
    hash does not depend on where the dataset lies on disk. Raises FileNotFoundError for a path
    that does not exist.
    """
    entries: list[tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            entries.extend(
                (f"{p.name}/{q.relative_to(p).as_posix()}", q) for q in p.rglob("*") if q.is_file()
            )
        elif p.is_file():
            entries.append((p.name, p))
        else:
            raise FileNotFoundError(f"dataset_hash: no such file or folder: {p}")
    h = hashlib.sha256()
    for name, path in sorted(entries, key=lambda e: e[0]):
        h.update(name.encode("utf-8") + b"\0")
        h.update(sha256_file(path).encode("ascii"))
    return h.hexdigest()
