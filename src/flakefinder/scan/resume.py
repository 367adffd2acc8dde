"""Start a scan or resume a chip's unfinished one: the decision ``flakefinder scan`` makes.

:func:`open_scan` is storage-agnostic (``flakefinder.db.Database`` implements
:class:`ScanOpener`). With ``resume=True`` it continues the chip's newest unfinished scan and
refuses, without writing anything, when there is none: starting a fresh full scan instead would
store every flake a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flakefinder.errors import FlakefinderError


class NothingToResumeError(FlakefinderError):
    """``--resume`` was asked for but the chip has no unfinished scan."""


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


class ScanOpener(Protocol):
    """What :func:`open_scan` needs from storage."""

    def get_chip(self, key: int | str) -> _HasId | None:
        """The chip with this id or name, if stored."""

    def add_chip(
        self,
        name: str,
        materials: Sequence[str] | str,
        oxide_thickness_nm: float,
        notes: str = "",
        *,
        get_or_create: bool = False,
    ) -> int:
        """Create (or, with ``get_or_create``, find) chip ``name``; returns its id."""

    def find_resumable_scan(self, chip_id: int) -> _HasId | None:
        """The chip's newest scan that is not finished, if any."""

    def start_scan(
        self,
        chip_id: int,
        *,
        settings: dict[str, Any],
        objective: str,
        um_per_px: float,
        detector: str,
        detector_version: str,
        n_tiles_planned: int,
    ) -> int:
        """Create a running scan and return its id."""


@dataclass(frozen=True)
class NewScan:
    """Everything stored about a scan when it starts.

    Parameters
    ----------
    chip_name, materials, oxide_thickness_nm
        The chip (found by name or created).
    settings
        Scan settings stored as JSON (overlap, corners, chip frame...).
    objective, um_per_px
        The microscope's objective and pixel size.
    detector, detector_version
        Who detects.
    n_tiles_planned
        Number of tiles of the plan.
    """

    chip_name: str
    materials: tuple[str, ...]
    oxide_thickness_nm: float
    objective: str
    um_per_px: float
    detector: str
    detector_version: str
    n_tiles_planned: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenedScan:
    """The scan to run: its id, its chip's id and whether it continues an earlier run."""

    scan_id: int
    chip_id: int
    resumed: bool


def open_scan(store: ScanOpener, scan: NewScan, *, resume: bool) -> OpenedScan:
    """Resume the chip's unfinished scan (``resume``) or start a new one.

    Raises
    ------
    NothingToResumeError
        ``resume`` with no stored chip of that name or no unfinished scan of it; nothing is
        written then.
    """
    if resume:
        chip = store.get_chip(scan.chip_name)
        found = None if chip is None else store.find_resumable_scan(chip.id)
        if chip is None or found is None:
            why = "is not in the database" if chip is None else "has no unfinished scan"
            raise NothingToResumeError(
                f"chip {scan.chip_name!r} {why}; nothing to resume (run the same command"
                " without --resume to start a new scan)"
            )
        return OpenedScan(found.id, chip.id, resumed=True)
    chip_id = store.add_chip(
        scan.chip_name, scan.materials, scan.oxide_thickness_nm, get_or_create=True
    )
    scan_id = store.start_scan(
        chip_id,
        settings=scan.settings,
        objective=scan.objective,
        um_per_px=scan.um_per_px,
        detector=scan.detector,
        detector_version=scan.detector_version,
        n_tiles_planned=scan.n_tiles_planned,
    )
    return OpenedScan(scan_id, chip_id, resumed=False)
