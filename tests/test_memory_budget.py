"""The memory accountant and the fair, cancellable batcher (issue 14, memory and time).

No test sleeps: order and cancellation are forced with events, waiting with futures.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError

import numpy as np
import pytest

from flakefinder.domain import Detection, ImagingContext, LayerClass
from flakefinder.membudget import BusyError, MemoryBudget, OverBudgetError
from flakefinder.server.batching import Batcher

MIB = 2**20


def test_reservations_add_up_and_peak_is_recorded() -> None:
    budget = MemoryBudget(limit_bytes=10 * MIB, request_limit_bytes=6 * MIB, wait_s=0)

    async def run() -> None:
        a = await budget.reserve(4 * MIB, "a")
        b = await budget.reserve(5 * MIB, "b")
        assert budget.in_use_bytes == 9 * MIB
        a.shrink(1 * MIB)  # decoded: only the working image stays
        assert budget.in_use_bytes == 6 * MIB
        a.release()
        a.release()  # idempotent
        b.release()
        assert budget.in_use_bytes == 0 and budget.peak_bytes == 9 * MIB

    asyncio.run(run())


def test_one_image_over_the_request_budget_is_413() -> None:
    budget = MemoryBudget(limit_bytes=10 * MIB, request_limit_bytes=6 * MIB)
    with pytest.raises(OverBudgetError, match="big.png: needs 7.0 MiB .* budget of 6.0 MiB per req"):
        asyncio.run(budget.reserve(7 * MIB, "big.png"))
    assert OverBudgetError.status_code == 413 and budget.refused == 1
    assert budget.in_use_bytes == 0


def test_a_full_server_answers_busy_after_waiting() -> None:
    budget = MemoryBudget(limit_bytes=10 * MIB, request_limit_bytes=10 * MIB, wait_s=0)
    held = budget.try_reserve(8 * MIB)
    assert held is not None

    with pytest.raises(BusyError, match="in use by other requests"):
        asyncio.run(budget.reserve(4 * MIB, "late.png"))
    assert BusyError.status_code == 429  # the client's load, not a server fault: no 5xx
    assert BusyError.retry_after_s == 5 and OverBudgetError.retry_after_s is None
    assert budget.in_use_bytes == 8 * MIB  # the refused request took nothing
    held.release()
    assert budget.try_reserve(10 * MIB) is not None


def test_waiters_are_served_first_come_first_served() -> None:
    budget = MemoryBudget(limit_bytes=10 * MIB, request_limit_bytes=10 * MIB, wait_s=60)
    order: list[str] = []

    async def run() -> None:
        first = await budget.reserve(9 * MIB, "first")

        async def want(name: str, n: int) -> None:
            r = await budget.reserve(n, name)
            order.append(name)
            r.release()

        big = asyncio.create_task(want("big", 8 * MIB))
        await asyncio.sleep(0)  # let it queue (a scheduling point, not a timed wait)
        small = asyncio.create_task(want("small", 1 * MIB))
        await asyncio.sleep(0)
        assert budget.try_reserve(1 * MIB) is None  # would overtake the queue: refused
        assert order == []  # 1 MiB would fit now, but "big" came first
        first.release()  # from any thread in the server; here from the loop
        await asyncio.gather(big, small)

    asyncio.run(run())
    assert order == ["big", "small"]
    assert budget.peak_bytes == 9 * MIB and budget.in_use_bytes == 0


def test_a_waiter_that_gives_up_lets_the_next_one_in() -> None:
    budget = MemoryBudget(limit_bytes=10 * MIB, request_limit_bytes=10 * MIB, wait_s=60)

    async def run() -> None:
        held = await budget.reserve(6 * MIB)
        big = asyncio.create_task(budget.reserve(8 * MIB, "big"))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.reserve(3 * MIB, "small"))
        await asyncio.sleep(0)
        assert not small.done()  # queued behind "big"
        big.cancel()  # its client went away
        got = await small
        assert budget.in_use_bytes == 9 * MIB
        got.release()
        held.release()

    asyncio.run(run())
    assert budget.in_use_bytes == 0


# -- the batcher ---------------------------------------------------------------------------------


class _Recorder:
    """Records the first pixel value of every image it sees; the first call waits for ``go``."""

    name = "recorder"
    version = "1"

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.started = threading.Event()
        self.go = threading.Event()

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        if not self.seen:
            self.started.set()
            assert self.go.wait(60), "the test never released the detector"
        self.seen.append(int(image[0, 0, 0]))
        full = np.zeros(image.shape[:2], bool)
        full[0, 0] = True
        return [
            Detection("graphene", LayerClass.MONO, 0.9, ((0, 0), (1, 0), (1, 1)), (0, 0, 1, 1), 1.0,
                      mask=full)  # fmt: skip
        ]


def _image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_one_clients_long_queue_does_not_starve_another() -> None:
    det = _Recorder()
    batcher = Batcher(det, max_batch=1, window_s=0)
    batcher.start()
    ctx = ImagingContext()
    try:
        gate = batcher.submit(_image(0), ctx, client="gate")
        assert det.started.wait(60)  # the worker is busy: everything below queues
        big = [batcher.submit(_image(10 + i), ctx, client="10.0.0.1") for i in range(6)]
        small = batcher.submit(_image(99), ctx, client="10.0.0.2")
        det.go.set()
        for fut in [gate, *big, small]:
            fut.result(timeout=60)
    finally:
        batcher.stop()
    # round robin: the small client's image comes right after the big client's first one
    assert det.seen == [0, 10, 99, 11, 12, 13, 14, 15]
    assert small.result().detections[0].mask is None  # masks are dropped at once


def test_a_cancelled_job_never_reaches_the_detector() -> None:
    det = _Recorder()
    batcher = Batcher(det, max_batch=4, window_s=0)
    batcher.start()
    ctx = ImagingContext()
    try:
        first = batcher.submit(_image(1), ctx, client="a")
        assert det.started.wait(60)
        gone = batcher.submit(_image(2), ctx, client="b")
        kept = batcher.submit(_image(3), ctx, client="c")
        assert gone.cancel()  # what the route does when its client disconnects
        det.go.set()
        first.result(timeout=60)
        kept.result(timeout=60)
        with pytest.raises(CancelledError):
            gone.result()
    finally:
        batcher.stop()
    assert det.seen == [1, 3]
    assert batcher.images_dropped == 1 and batcher.images_done == 2


def test_large_buffers_go_back_to_the_os_on_glibc() -> None:
    import platform

    from flakefinder.server.allocator import return_large_buffers_to_os

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt's mmap threshold is a glibc setting")
    assert return_large_buffers_to_os() is True
