"""Throttling of guesses (wrong API keys and logins) and of repetitive log lines.

:class:`FailureLimiter` counts authentication failures per client address. After
``free_failures`` failures in a row the address is refused (429 with ``Retry-After``) for a
back-off that starts at ``backoff_s`` and doubles with every further failure, up to
``max_backoff_s``; a success, or ``forget_after_s`` without failures, starts over. While an
address is refused its keys are not even compared, so guessing gains nothing. The table is
bounded (``max_addresses``, least recently failed dropped first): many addresses cost a fixed
amount of memory.

:class:`RateLimitedLog` writes a repeated warning once per ``interval_s`` per kind, with the
number of times it was held back, so that a flood becomes a few lines instead of a log that
fills the disk.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

LOG = logging.getLogger("flakefinder.server")


@dataclass(frozen=True)
class FailureRules:
    """How many failures are free, and how long the back-off lasts."""

    free_failures: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    forget_after_s: float = 600.0
    max_addresses: int = 4096


@dataclass
class _Record:
    failures: int
    last_s: float
    blocked_until_s: float


class RateLimitedLog:
    """``warning(kind, message)`` at most once per ``interval_s`` per kind (thread-safe)."""

    def __init__(
        self,
        logger: logging.Logger = LOG,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str) -> bool:
        """Log ``message`` unless ``kind`` was logged in the last ``interval_s``; whether it was."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            held = self._held.pop(kind, 0)
            self._last[kind] = now
        more = f" ({held} more like it since the last report)" if held else ""
        self.logger.warning("%s%s", message, more)
        return True


class FailureLimiter:
    """Per-address failure counts with exponential back-off (see the module docstring)."""

    def __init__(
        self,
        rules: FailureRules | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: RateLimitedLog | None = None,
    ) -> None:
        self.rules = rules or FailureRules()
        self.clock = clock
        self.log = log or RateLimitedLog(clock=lambda: self.clock())
        self._table: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)

    def retry_after_s(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        now = self.clock()
        with self._lock:
            record = self._table.get(address)
            if record is None or record.blocked_until_s <= now:
                return None
            return max(1, math.ceil(record.blocked_until_s - now))

    def failed(self, address: str, what: str) -> None:
        """Count one failure (``what``: "API key", "login") of ``address``."""
        now = self.clock()
        rules = self.rules
        with self._lock:
            record = self._table.pop(address, None)
            if record is None or now - record.last_s > rules.forget_after_s:
                record = _Record(0, now, 0.0)
            record.failures += 1
            record.last_s = now
            excess = record.failures - rules.free_failures
            if excess >= 0:
                wait = min(rules.max_backoff_s, rules.backoff_s * 2.0 ** min(excess, 30))
                record.blocked_until_s = now + wait
            self._table[address] = record
            while len(self._table) > rules.max_addresses:
                self._table.popitem(last=False)
        if excess == 0:  # once per burst (and at most once a minute for all addresses)
            self.log.warning(
                "failed-auth",
                f"{record.failures} wrong {what}s in a row from {address}: refusing it (429)"
                f" with a back-off of {rules.backoff_s:g} s doubling up to"
                f" {rules.max_backoff_s:g} s",
            )

    def succeeded(self, address: str) -> None:
        """A correct key or login: the address starts over."""
        with self._lock:
            self._table.pop(address, None)
