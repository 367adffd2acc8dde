"""What a scan needs from storage. ``flakefinder.db.Database`` implements it.

``run_scan`` calls ``record_tile`` from its writer thread (one tile at a time, in scan order) and
the other methods from the calling thread, never two calls at once; pass
``background_store=False`` to ``run_scan`` for a store that must stay on one thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flakefinder.domain import FlakeRecord, TileRecord


class ScanStore(Protocol):
    def completed_tiles(self, scan_id: int) -> set[int]:
        """Tile indexes of ``scan_id`` already stored (for resuming)."""

    def scan_flakes(self, scan_id: int) -> list[FlakeRecord]:
        """Every flake stored for ``scan_id`` so far (to deduplicate against on resume)."""

    def record_tile(self, scan_id: int, tile: TileRecord, flakes: list[FlakeRecord]) -> None:
        """Store one tile's image row and its new flakes in one transaction."""

    def finish_scan(self, scan_id: int) -> None:
        """Mark the scan finished (sets its end time)."""
