"""Torch-free helpers for files: self-describing artifacts, atomic output, bounded JSON input.

sha256 of files and of canonical JSON, dataset hashes and model cards (model folders and setup
profiles share them); :func:`atomic_open` / :func:`write_atomic` / :func:`write_json_atomic`,
the one way every command writes an output file (a temporary file in the same folder, fsync,
rename: a crash or a full disk never leaves a half-written file, and never replaces a good one);
:func:`parse_json` / :func:`load_json_file`, the one way user-supplied JSON is read (size, depth
and number lengths checked before or while parsing; NaN, Infinity and lone surrogates refused).
numpy and the standard library only, so lower layers can use them without importing torch.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np

from flakefinder.errors import JsonInputError, OutputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

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


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """One line for an output file that could not be written (full disk named as such)."""
    code = exc.errno
    if code == errno.ENOSPC:
        why = "no space left on device"
    elif code == errno.EDQUOT:
        why = "disk quota exceeded"
    elif code == errno.EROFS:
        why = "read-only file system"
    else:
        why = exc.strerror or str(exc) or type(exc).__name__
    kept = " (the file already there is unchanged)" if Path(path).exists() else ""
    error = OutputError(f"cannot write {path}: {why}{kept}")
    error.errno = code
    return error


class _FdWriter(io.RawIOBase):
    """Raw writes to a file descriptor through :func:`os.write` (the descriptor stays open)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:
        return os.write(self._fd, data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)


def _new_file_mode() -> int:
    """Permissions of a newly created file under the current umask (read without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_open(
    path: str | Path,
    mode: Literal["w", "wb"] = "w",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` at the end.

    The ``with`` block writes to the yielded file (text for ``"w"``, bytes for ``"wb"``); on
    success the data are flushed and fsynced and the file is renamed onto ``path`` (atomic on
    POSIX). On any error the temporary file is removed and ``path`` is left as it was. An
    :class:`OSError` (a full disk, a read-only folder) becomes one :class:`OutputError`.
    """
    target = Path(path)
    folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(folder))
    except OSError as exc:
        raise output_error(target, exc) from None
    buffered = io.BufferedWriter(_FdWriter(fd))
    handle: IO[Any] = (
        buffered
        if mode == "wb"
        else io.TextIOWrapper(buffered, encoding=encoding, newline=newline, write_through=False)
    )
    try:
        try:
            yield handle
            handle.flush()
            if hasattr(os, "fchmod"):  # POSIX: the permissions of an ordinary new file
                os.fchmod(fd, _new_file_mode())
            os.fsync(fd)
        finally:
            try:
                handle.close()
            except OSError:
                pass  # an earlier error is already on its way
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise output_error(target, exc) from None
        raise
    _sync_folder(folder)


def write_atomic(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` with :func:`atomic_open`; returns the path."""
    if isinstance(data, bytes):
        with atomic_open(path, "wb") as f:
            f.write(data)
    else:
        with atomic_open(path, "w", encoding=encoding, newline="") as f:
            f.write(data)
    return Path(path)


def write_json_atomic(
    path: str | Path,
    data: Mapping[str, Any] | list[Any],
    *,
    allow_nan: bool = False,
    default: Callable[[Any], Any] | None = None,
    indent: int | None = 2,
) -> None:
    """Write ``data`` as JSON (sorted keys, ``indent``) to ``path`` with :func:`atomic_open`.

    A crash or a full disk never leaves a half-written file at ``path``. ``allow_nan`` and
    ``default`` are passed to :func:`json.dumps` (by default NaN and non-JSON values are refused).
    """
    text = json.dumps(data, indent=indent, sort_keys=True, allow_nan=allow_nan, default=default)
    write_atomic(path, text + "\n")


@dataclass(frozen=True)
class JsonLimits:
    """What :func:`parse_json` accepts: total size, nesting depth, digits of one number."""

    max_bytes: int = 512 * 2**20
    max_depth: int = 64
    max_number_chars: int = 64


FILE_JSON_LIMITS = JsonLimits()
"""Limits for user-supplied JSON files (setup profiles, COCO, colour tables, label exports)."""

_ESCAPE_RE = re.compile(r"\\.", re.DOTALL)
_ONLY_STRUCTURE = {c: None for c in range(128) if chr(c) not in '"[]{}'}
_PLAIN_STRING_RE = re.compile(r'"[^"]*"')
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings ignored).

    Linear and without recursion: escapes are dropped, then everything but quotes and
    brackets, then the strings; what is left are the brackets of the structure.
    """
    structure = _ESCAPE_RE.sub("", text) if "\\" in text else text
    structure = _PLAIN_STRING_RE.sub("", structure.translate(_ONLY_STRUCTURE))
    codes = np.frombuffer(structure.encode("utf-8", "surrogatepass"), np.uint8)
    opening = (codes == ord("[")) | (codes == ord("{"))
    codes = codes[opening | (codes == ord("]")) | (codes == ord("}"))]
    if not len(codes):
        return 0
    return int(np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)).max())


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(data: str | bytes, *, what: str = "JSON", limits: JsonLimits = FILE_JSON_LIMITS) -> Any:
    """Parse strict JSON (RFC 8259) within ``limits``; :class:`JsonInputError` otherwise.

    Refused, each with one line naming ``what``: more than ``max_bytes``, text that is not
    UTF-8, nesting deeper than ``max_depth`` (checked before parsing, so no RecursionError),
    a number longer than ``max_number_chars`` (no 5,000-digit integers), ``NaN``,
    ``Infinity`` and numbers that overflow to infinity, and lone UTF-16 surrogates.
    """
    size = len(data)
    if size > limits.max_bytes:
        raise JsonInputError(f"{what}: {size} bytes of JSON exceed the limit of {limits.max_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonInputError(f"{what}: not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    depth = json_depth(text)
    if depth > limits.max_depth:
        raise JsonInputError(
            f"{what}: JSON nested {depth} levels deep (at most {limits.max_depth} allowed)"
        )

    def number(literal: str) -> str:
        if len(literal) > limits.max_number_chars:
            raise JsonInputError(
                f"{what}: a number of {len(literal)} characters (at most"
                f" {limits.max_number_chars} allowed)"
            )
        return literal

    def parse_int(literal: str) -> int:
        return int(number(literal))

    def parse_float(literal: str) -> float:
        value = float(number(literal))
        if not np.isfinite(value):
            raise JsonInputError(f"{what}: the number {literal} is out of range")
        return value

    def constant(name: str) -> Any:
        raise JsonInputError(f"{what}: {name} is not a JSON number")

    try:
        value = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=constant
        )
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            f"{what}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise JsonInputError(f"{what}: JSON nested too deeply") from None
    if _SURROGATE_ESCAPE_RE.search(text) and _has_lone_surrogate(value):
        raise JsonInputError(f"{what}: a string holds a lone UTF-16 surrogate (not valid Unicode)")
    return value


def load_json_file(
    path: str | Path,
    *,
    error: type[Exception] = JsonInputError,
    what: str | None = None,
    limits: JsonLimits = FILE_JSON_LIMITS,
) -> Any:
    """Read the JSON file at ``path`` with :func:`parse_json` (its size checked before reading).

    Every problem (missing, unreadable, too large, not strict JSON) raises ``error`` with one
    line naming the file (``what`` when given).
    """
    p = Path(path)
    name = what or str(p)
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise error(f"{name}: {size} bytes is larger than the {limits.max_bytes} allowed")
        data = p.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        return parse_json(data, what=name, limits=limits)
    except JsonInputError as exc:
        if error is JsonInputError:
            raise
        raise error(str(exc)) from None


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


def model_card_markdown(
    title: str,
    facts: Sequence[str],
    sections: Mapping[str, Mapping[str, Any] | None],
) -> str:
    """Human-readable Markdown summary of an artifact.

    Parameters
    ----------
    title
        Heading of the card.
    facts
        One bullet each, below the heading.
    sections
        Heading -> entries; each entry becomes ``- key: <JSON of value>``, and an empty or
        missing mapping becomes ``- not recorded``.

    Returns
    -------
    str
        The card, ending in a newline.
    """
    lines = [f"# {title}", "", *(f"- {fact}" for fact in facts), ""]
    for i, (heading, entries) in enumerate(sections.items()):
        if i:
            lines.append("")
        lines += [f"## {heading}", ""]
        if entries:
            lines += [f"- {k}: {json.dumps(v, default=str)}" for k, v in entries.items()]
        else:
            lines.append("- not recorded")
    return "\n".join(lines) + "\n"
