"""Writing the trained model folder atomically.

The model files (weights, config, class map, metrics, card) are written into a temporary
sibling folder; the training's own files already in the output folder (checkpoint, history,
loss plot, logs) are moved over, and the folders are swapped by renames. A crash or a bad
input therefore never leaves a folder with new weights and an old config, or half a model.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def partial_dir(out: Path) -> Path:
    """The temporary sibling folder a model folder is assembled in."""
    return out.with_name(f".{out.name}.partial")


def publish_folder(out: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder, then make it ``out`` atomically.

    Files in an existing ``out`` that ``write`` did not produce (checkpoint, history, plots)
    are carried over; files it did produce replace the old ones.

    Parameters
    ----------
    out
        The model folder to create or replace.
    write
        Writes the model files into the folder it is given.

    Returns
    -------
    Path
        ``out``.
    """
    tmp = partial_dir(out)
    old = out.with_name(f".{out.name}.old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir():
        produced = {p.name for p in tmp.iterdir()}
        for entry in out.iterdir():
            if entry.name not in produced:
                os.replace(entry, tmp / entry.name)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out
