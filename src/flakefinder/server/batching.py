"""Group concurrent requests into one model call (GPU batching), on one worker thread, fairly.

Requests that arrive within ``window_s`` of each other (up to ``max_batch``) share one
``detect_batch`` call when the detector is a :class:`~flakefinder.domain.BatchDetector`;
otherwise they run one after another on the same thread, which still keeps the model off the
event loop. A failure inside a batch is retried image by image so one bad request never fails
its neighbours.

Fairness: each client (the address a route passes to :meth:`Batcher.submit`) has its own
queue, and a batch takes one image from each client in turn (round robin, starting after the
client served first last time), so a client with thirty queued images cannot make a one-image
request wait for all of them. Cancellation: a job whose future was cancelled (the client went
away) is dropped before the model sees it and counted in ``images_dropped``.

The server never sends masks, so each image's detections lose theirs as soon as the detector
returns (a full-size boolean array per detection would otherwise wait in memory for the
answer).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from flakefinder.domain import BatchDetector, Detection, Detector, ImagingContext


@dataclass(frozen=True)
class BatchResult:
    detections: list[Detection]
    batch_size: int
    queue_s: float
    model_s: float


@dataclass
class _Job:
    image: np.ndarray
    context: ImagingContext
    future: Future[BatchResult]
    submitted: float


def _without_masks(detections: list[Detection]) -> list[Detection]:
    return [d if d.mask is None else dataclasses.replace(d, mask=None) for d in detections]


class Batcher:
    def __init__(self, detector: Detector, *, max_batch: int = 8, window_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.detector = detector
        self.max_batch = max_batch
        self.window_s = window_s
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._pending = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.images_done = 0
        self.images_dropped = 0
        self.model_seconds = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="flakefinder-batcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Finish the queued jobs, then end the worker thread."""
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by the worker."""
        with self._cond:
            return self._pending

    def submit(
        self, image: np.ndarray, context: ImagingContext, *, client: str = ""
    ) -> Future[BatchResult]:
        """Queue ``image`` for ``client``; the future holds its detections (masks dropped)."""
        if self._thread is None:
            raise RuntimeError("Batcher.start() was not called")
        fut: Future[BatchResult] = Future()
        with self._cond:
            self._queues.setdefault(client, deque()).append(
                _Job(image, context, fut, time.perf_counter())
            )
            self._pending += 1
            self._cond.notify_all()
        return fut

    def _take(self) -> list[_Job]:
        """Up to ``max_batch`` jobs, one per client in turn (call with the lock held)."""
        jobs: list[_Job] = []
        while self._queues and len(jobs) < self.max_batch:
            client, queue = next(iter(self._queues.items()))
            jobs.append(queue.popleft())
            self._pending -= 1
            if queue:
                self._queues.move_to_end(client)  # its next job waits for the other clients
            else:
                del self._queues[client]
        return jobs

    def _next_jobs(self) -> list[_Job] | None:
        """The next batch, after waiting up to ``window_s`` for it to fill; None: stop."""
        with self._cond:
            while self._pending == 0:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = time.perf_counter() + self.window_s
            while self._pending < self.max_batch and not self._stopping:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def _run(self) -> None:
        while (jobs := self._next_jobs()) is not None:
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            with self._cond:
                self.images_dropped += len(jobs) - len(live)
            groups: dict[ImagingContext, list[_Job]] = {}
            for job in live:
                groups.setdefault(job.context, []).append(job)
            for context, group in groups.items():
                self._run_group(context, group)

    def _run_group(self, context: ImagingContext, group: list[_Job]) -> None:
        start = time.perf_counter()
        det = self.detector
        try:
            if isinstance(det, BatchDetector) and len(group) > 1:
                outputs = [
                    _without_masks(d) for d in det.detect_batch([j.image for j in group], context)
                ]
            else:
                outputs = [_without_masks(det.detect(j.image, context)) for j in group]
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            for job in group:  # isolate the failing image
                self._run_group(context, [job])
            return
        model_s = time.perf_counter() - start
        with self._cond:
            self.images_done += len(group)
            self.model_seconds += model_s
        for job, dets in zip(group, outputs, strict=True):
            job.future.set_result(BatchResult(dets, len(group), start - job.submitted, model_s))
