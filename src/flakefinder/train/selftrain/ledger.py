"""The account of a self-trained model: what it learned from and how much CPU time it took.

``OUT/selftrain.json`` (kept across chunks; the model folder's publishing carries it over)
records the data (pseudo-label source, sources, trained and held-out file names per set, the
dataset's sha256) and one entry per chunk: process CPU time (all threads; the dataset build
included when the chunk built it), wall time, device and the steps it took. The model card
gets a "Self-training" section from it, with the accumulated CPU-hours and the command that
continues the training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

LEDGER = "selftrain.json"
CARD_HEADING = "## Self-training"


def read_ledger(out: Path) -> dict[str, Any]:
    """The ledger of the model folder ``out`` (an empty one when there is none)."""
    from flakefinder.artifacts import load_json_file
    from flakefinder.errors import ModelError

    path = out / LEDGER
    if not path.is_file():
        return {"chunks": []}
    data = load_json_file(path, error=ModelError)
    if not isinstance(data, dict) or not isinstance(data.get("chunks"), list):
        raise ModelError(f"{path} is not a self-training ledger (no list of chunks)")
    return data


def cpu_hours(ledger: dict[str, Any]) -> float:
    """Sum of the chunks' process CPU time, in hours."""
    return sum(float(c.get("cpu_s", 0.0)) for c in ledger.get("chunks", [])) / 3600.0


def record_chunk(
    out: Path, chunk: dict[str, Any], manifest: dict[str, Any], *, fresh: bool, command: str
) -> dict[str, Any]:
    """Add ``chunk`` to the ledger (a new ledger when ``fresh``) and write it atomically."""
    from flakefinder.artifacts import write_json_atomic

    ledger = {"chunks": []} if fresh else read_ledger(out)
    chunks = [*ledger["chunks"], chunk]
    keep = ("sources", "sets", "pseudo_labels", "synth", "tile_px", "tile_um_per_px", "counts",
            "tiles", "labels", "sha256")  # fmt: skip
    ledger = {
        "chunks": chunks,
        "cpu_hours": round(sum(float(c["cpu_s"]) for c in chunks) / 3600.0, 4),
        "gpu_wall_hours": round(sum(float(c["wall_s"]) for c in chunks
                                    if str(c.get("device", "")).startswith("cuda")) / 3600.0, 4),
        "continue_with": command,
        "data": {k: manifest[k] for k in keep if k in manifest},
    }  # fmt: skip
    write_json_atomic(out / LEDGER, ledger)
    return ledger


def card_section(ledger: dict[str, Any]) -> str:
    """The model card's "Self-training" section."""
    data = ledger.get("data", {})
    chunks = ledger.get("chunks", [])
    last = chunks[-1] if chunks else {}
    lines = [
        CARD_HEADING,
        "",
        f"- pseudo-labels: {data.get('pseudo_labels', '?')}",
        f"- tiles: {data.get('tiles', '?')} of {data.get('tile_px', '?')} px at "
        f"{data.get('tile_um_per_px', '?')} µm/px ({data.get('labels', '?')} labels); "
        f"dataset sha256 `{data.get('sha256', '?')}`",
    ]
    for name, s in sorted(data.get("sets", {}).items()):
        lines.append(
            f"- {name} ({s.get('origin', '')}): trained on {len(s.get('trained', []))} pictures, "
            f"held out {len(s.get('held_out', []))} (names in `selftrain.json`)"
        )
    synth = data.get("synth", {})
    if synth:
        lines.append(f"- synthetic: {synth.get('images', 0)} realistic tiles with exact labels "
                     f"(seed {synth.get('seed', '?')})")  # fmt: skip
    lines += [
        f"- CPU time so far: {cpu_hours(ledger):.3f} CPU-hours in {len(chunks)} chunk(s) "
        "(process CPU time of each `flakefinder train` call, all threads, dataset build included)",
        f"- steps so far: {last.get('steps_after', 0)}; training "
        f"{'finished' if last.get('completed') else 'not finished'}",
        f"- continue with: `{ledger.get('continue_with', '')}`",
        "",
    ]
    return "\n".join(lines)


def write_card_section(out: Path, ledger: dict[str, Any]) -> None:
    """Replace (or add) the "Self-training" section of ``out/model_card.md``."""
    from flakefinder.artifacts import write_atomic

    path = out / "model_card.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    head, sep, tail = text.partition(CARD_HEADING)
    if sep:
        rest = tail.split("\n## ", 1)
        tail_after = ("\n## " + rest[1]) if len(rest) > 1 else ""
        text = head.rstrip("\n") + "\n\n" + card_section(ledger) + tail_after
    else:
        text = text.rstrip("\n") + "\n\n" + card_section(ledger)
    write_atomic(path, text)
