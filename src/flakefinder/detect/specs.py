"""The typed vocabulary of the detector registry: options and detector entries.

:class:`OptionSpec` describes one ``--detector-option``; :class:`DetectorSpec` one detector
(name, options, what it accepts, how to build it). The entries themselves live in
:mod:`flakefinder.detect.builders`; lookup and construction in :mod:`flakefinder.detect.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flakefinder.errors import UnknownDetectorError

if TYPE_CHECKING:
    from flakefinder.detect.setup_io import LoadedSetup
    from flakefinder.domain import Detector

OptionValue = float | int | bool | str
OptionType = Literal["float", "int", "bool", "str"]
Builder = Callable[[Path | None, "LoadedSetup | None", Mapping[str, OptionValue]], "Detector"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class DetectorOptionError(UnknownDetectorError):
    """A ``--detector-option`` that the detector does not have, or a value of the wrong type."""


@dataclass(frozen=True)
class OptionSpec:
    """One typed option of a detector (a keyword argument of its constructor).

    Parameters
    ----------
    name
        Keyword name, e.g. ``min_area_um2``.
    type
        ``float``, ``int``, ``bool`` or ``str``; command-line strings are parsed to it.
    default
        The detector's own default (shown in help; not passed when the option is not given).
    help
        One line for ``--help``.
    minimum
        Smallest allowed value for numbers (inclusive), or None.
    maximum
        Largest allowed value for numbers (inclusive), or None.
    """

    name: str
    type: OptionType
    default: OptionValue | None
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, text: str | OptionValue, detector: str) -> OptionValue:
        """Parse ``text`` (a command-line string or an already typed value) to this type."""
        where = f"detector option {self.name!r} of {detector!r}"
        if self.type == "bool":
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise DetectorOptionError(f"{where} must be true or false, got {text!r}")
        if self.type == "str":
            return str(text)
        try:
            value: float | int
            if self.type == "int":
                if isinstance(text, float) and not text.is_integer():
                    raise ValueError
                value = int(text)
            else:
                value = float(text)
        except (TypeError, ValueError):
            raise DetectorOptionError(f"{where} must be {self._kind()}, got {text!r}") from None
        if not math.isfinite(value):
            raise DetectorOptionError(f"{where} must be a finite number, got {text!r}")
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise DetectorOptionError(f"{where} must lie in {self._range()}, got {text!r}")
        return value

    def _kind(self) -> str:
        return "an integer" if self.type == "int" else "a number"

    def _range(self) -> str:
        lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
        hi = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"[{lo}, {hi}]"

    def describe(self) -> str:
        """``name (type, default X): help`` for listings."""
        return f"{self.name} ({self.type}, default {self.default}): {self.help}"


@dataclass(frozen=True)
class DetectorSpec:
    """One detector of the registry: how to name, configure and build it.

    Parameters
    ----------
    name
        The ``--detector`` name.
    summary
        One line for help texts.
    options
        The typed options accepted by ``--detector-option``.
    build
        ``build(model, setup, options) -> Detector`` with already parsed options.
    model
        ``"none"``: takes no model folder; ``"optional"``: a model folder, else the shipped one.
    accepts_setup
        Whether a setup profile (``--setup FILE``) can configure it.
    aliases
        Other accepted spellings.
    score_option
        The option that the commands' ``--score`` sets (a confidence floor inside the detector),
        or None when the detector has none.
    device_option
        The option that the commands' ``--device`` sets, or None (runs on the CPU only).
    setup_options
        The options that apply instead of ``options`` when a setup profile is given, or None
        when they are the same.
    requires_setup
        Whether it only works with a setup profile.
    """

    name: str
    summary: str
    options: tuple[OptionSpec, ...]
    build: Builder
    model: Literal["none", "optional"] = "none"
    accepts_setup: bool = False
    aliases: tuple[str, ...] = ()
    score_option: str | None = None
    device_option: str | None = None
    setup_options: tuple[OptionSpec, ...] | None = None
    requires_setup: bool = False

    def options_for(self, with_setup: bool) -> tuple[OptionSpec, ...]:
        """The options that apply with or without a setup profile."""
        if with_setup and self.setup_options is not None:
            return self.setup_options
        return self.options

    def option(self, name: str, *, with_setup: bool = False) -> OptionSpec:
        """The option called ``name``; raises :class:`DetectorOptionError` listing valid ones."""
        specs = self.options_for(with_setup)
        for opt in specs:
            if opt.name == name:
                return opt
        valid = ", ".join(o.name for o in specs) or "none"
        where = " with a setup profile" if with_setup and self.setup_options is not None else ""
        raise DetectorOptionError(
            f"detector {self.name!r}{where} has no option {name!r}; its options: {valid}"
        )

    def parse_options(
        self, options: Mapping[str, str | OptionValue] | None, *, with_setup: bool = False
    ) -> dict[str, OptionValue]:
        """Typed option values from strings (or values); unknown names and bad values raise."""
        return {
            k: self.option(k, with_setup=with_setup).parse(v, self.name)
            for k, v in (options or {}).items()
        }
