"""A memory budget for decoded images: every one is accounted before its pixels exist.

A route reads an upload's header (:func:`flakefinder.imaging.read_header`), reserves the most
memory decoding it can take (:meth:`~flakefinder.imaging.ImageHeader.decode_peak_bytes`) from
the server's :class:`MemoryBudget`, decodes, shrinks the reservation to the working image it
keeps, and releases it when the answer is built. The budget holds by construction:

* one reservation larger than ``request_limit_bytes`` is refused at once
  (:class:`OverBudgetError`, HTTP 413): that image can never be decoded here;
* when the server's ``limit_bytes`` are taken, a request waits its turn (first come, first
  served, so a large image is not starved by small ones) for at most ``wait_s``, then gets
  :class:`BusyError` (HTTP 429 with ``Retry-After``), never an out-of-memory kill. A busy
  server refusing more work because of its clients' load is a rate condition on the client's
  side (try again later), not a server fault: no 5xx.

Waiting happens on the event loop (``await reserve``); releasing is thread-safe and may happen
anywhere. Counters (``in_use_bytes``, ``peak_bytes``, waits and refusals) are what the tests
and benchmarks read.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flakefinder.errors import FlakefinderError

if TYPE_CHECKING:
    from types import TracebackType

MIB = 2**20
DEFAULT_HINT = "send a smaller image"
RETRY_AFTER_S = 5  # what a busy answer's Retry-After asks a client to wait


class MemoryBudgetError(FlakefinderError):
    """A reservation the budget cannot grant; ``status_code`` is the HTTP answer and
    ``retry_after_s`` its ``Retry-After`` (None: trying again will not help)."""

    status_code = 429
    retry_after_s: int | None = RETRY_AFTER_S

    def http_headers(self) -> dict[str, str] | None:
        """The headers of the HTTP answer: ``Retry-After`` when trying again may work."""
        return None if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class OverBudgetError(MemoryBudgetError):
    """One image needs more memory than a request may ever hold (HTTP 413)."""

    status_code = 413
    retry_after_s = None


class BusyError(MemoryBudgetError):
    """The server's memory is taken by other requests for longer than a request waits
    (HTTP 429 Too Many Requests with ``Retry-After``)."""

    status_code = 429
    retry_after_s = RETRY_AFTER_S


def openapi_responses() -> dict[int | str, dict[str, Any]]:
    """The answers of a refused reservation, for a route's OpenAPI ``responses``."""
    return {
        OverBudgetError.status_code: {
            "description": "Too large: the upload, or one image needs more memory than a"
            " request may hold (send a smaller image; trying again will not help)"
        },
        BusyError.status_code: {
            "description": "Too many requests: the server's image memory is in use by other"
            " requests (or too many wrong API keys came from this address); try again after"
            " Retry-After seconds",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer"},
                }
            },
        },
    }


@dataclass(eq=False)
class _Waiter:
    n_bytes: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


class Reservation:
    """Bytes held from a :class:`MemoryBudget` until :meth:`release` (idempotent)."""

    def __init__(self, budget: MemoryBudget, n_bytes: int) -> None:
        self._budget = budget
        self.n_bytes = n_bytes

    def shrink(self, n_bytes: int) -> None:
        """Keep only ``n_bytes`` (what is left after decoding: the working image)."""
        n_bytes = max(0, int(n_bytes))
        if n_bytes < self.n_bytes:
            self._budget._give_back(self.n_bytes - n_bytes)
            self.n_bytes = n_bytes

    def release(self) -> None:
        """Give everything back."""
        self.shrink(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass
class MemoryBudget:
    """Bytes of decoded images (and their working copies) the server holds at once.

    Parameters
    ----------
    limit_bytes
        The whole server's budget.
    request_limit_bytes
        The most one reservation may ask for (one image of one request).
    wait_s
        How long a request waits for memory held by others before a 429.
    """

    limit_bytes: int
    request_limit_bytes: int
    wait_s: float = 30.0
    in_use_bytes: int = 0
    peak_bytes: int = 0
    granted: int = 0
    waited: int = 0
    refused: int = 0
    _waiters: deque[_Waiter] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.limit_bytes <= 0 or self.request_limit_bytes <= 0 or self.wait_s < 0:
            raise ValueError("memory budgets must be positive and wait_s >= 0")
        self.request_limit_bytes = min(self.request_limit_bytes, self.limit_bytes)

    def check(self, n_bytes: int, what: str, hint: str = DEFAULT_HINT) -> None:
        """Raise :class:`OverBudgetError` when one reservation of ``n_bytes`` can never fit;
        its message names ``what`` needs the memory and ends with ``hint``."""
        if n_bytes > self.request_limit_bytes:
            with self._lock:
                self.refused += 1
            raise OverBudgetError(
                f"{what}: needs {_mib(n_bytes)} of memory, over this server's budget of"
                f" {_mib(self.request_limit_bytes)} per request: {hint}"
            )

    def try_reserve(self, n_bytes: int, what: str = "request") -> Reservation | None:
        """Reserve ``n_bytes`` now if they fit and nobody is waiting, else None (no wait)."""
        self.check(n_bytes, what)
        with self._lock:
            if self._waiters or self.in_use_bytes + n_bytes > self.limit_bytes:
                return None
            self._take(n_bytes)
        return Reservation(self, n_bytes)

    async def reserve(
        self, n_bytes: int, what: str = "request", hint: str = DEFAULT_HINT
    ) -> Reservation:
        """Reserve ``n_bytes``, waiting (first come, first served) up to ``wait_s``.

        Raises :class:`OverBudgetError` (413, see :meth:`check`) or :class:`BusyError` (429).
        """
        n_bytes = max(0, int(n_bytes))
        self.check(n_bytes, what, hint)
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self.in_use_bytes + n_bytes <= self.limit_bytes:
                self._take(n_bytes)
                return Reservation(self, n_bytes)
            waiter = _Waiter(n_bytes, loop, loop.create_future())
            self._waiters.append(waiter)
            self.waited += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=self.wait_s)
        except TimeoutError:
            self._abandon(waiter)
            raise BusyError(
                f"{what}: the server's image memory ({_mib(self.limit_bytes)}) is in use"
                " by other requests; try again in a few seconds"
            ) from None
        except BaseException:  # cancelled: the client went away
            self._abandon(waiter)
            raise
        return Reservation(self, n_bytes)

    def _abandon(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.granted:  # granted just as we gave up: hand it back
                self._give_back_locked(waiter.n_bytes)
            else:
                self._waiters.remove(waiter)
                self._grant_locked()  # a smaller request behind it may fit now
            self.refused += 1

    def reset_peak(self) -> None:
        """Start a new peak measurement at the current use."""
        with self._lock:
            self.peak_bytes = self.in_use_bytes

    def _take(self, n_bytes: int) -> None:
        self.in_use_bytes += n_bytes
        self.peak_bytes = max(self.peak_bytes, self.in_use_bytes)
        self.granted += 1

    def _give_back(self, n_bytes: int) -> None:
        with self._lock:
            self._give_back_locked(n_bytes)

    def _give_back_locked(self, n_bytes: int) -> None:
        self.in_use_bytes -= n_bytes
        self._grant_locked()

    def _grant_locked(self) -> None:
        while self._waiters and self.in_use_bytes + self._waiters[0].n_bytes <= self.limit_bytes:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._take(waiter.n_bytes)
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _mib(n_bytes: int) -> str:
    """``n_bytes`` in MiB for a message (one decimal below 10 MiB)."""
    mib = n_bytes / MIB
    return f"{mib:.1f} MiB" if mib < 10 else f"{mib:,.0f} MiB"
