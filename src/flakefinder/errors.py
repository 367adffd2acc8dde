"""Exceptions shared across flakefinder. Each carries one clear, user-facing message."""

from __future__ import annotations


class FlakefinderError(Exception):
    """Base class for every error flakefinder raises on purpose."""


class UnknownMaterialError(FlakefinderError, KeyError):
    """A material name that the optics model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown material"


class UnknownDetectorError(FlakefinderError, ValueError):
    """A detector name that flakefinder does not provide."""


class WavelengthRangeError(FlakefinderError, ValueError):
    """Optical constants asked for outside the tabulated wavelength range."""


class ImageError(FlakefinderError, ValueError):
    """An image that cannot be read or has the wrong shape or type."""


class StageLimitError(FlakefinderError, ValueError):
    """A stage move or scan area outside the stage's travel limits."""


class DatabaseError(FlakefinderError):
    """The database cannot be reached or holds something unexpected."""


class DatasetError(FlakefinderError, ValueError):
    """A dataset (COCO file, annotation export) that is malformed."""


class ModelError(FlakefinderError, ValueError):
    """A model folder or weights file that cannot be used."""


class ProfileError(FlakefinderError, ValueError):
    """A setup profile (microscope colour calibration) that is malformed or does not fit."""


class CalibrationError(FlakefinderError, ValueError):
    """Calibration input (images, labels, masks) that cannot determine a colour table."""


class DesignError(FlakefinderError, ValueError):
    """A heterostructure design that cannot be drawn (bad placement or outline)."""


class UnknownFlakeError(DesignError):
    """A design layer naming a flake that is not in the database."""


class ScanLockedError(FlakefinderError):
    """A scan that another process is running right now."""


class OutputError(FlakefinderError, OSError):
    """An output file that cannot be written (a full disk, a read-only folder); the file that
    was at that path before, if any, is left unchanged."""


class JsonInputError(FlakefinderError, ValueError):
    """JSON that is not strict JSON (NaN, Infinity, lone surrogates) or is too large or deep."""
