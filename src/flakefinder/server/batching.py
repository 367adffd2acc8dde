"""Group concurrent requests into one model call (GPU batching), on one worker thread.

Requests that arrive within ``window_s`` of each other (up to ``max_batch``) share one
``detect_batch`` call when the detector is a :class:`~flakefinder.domain.BatchDetector`; otherwise they run one after another on the
same thread, which still keeps the model off the event loop. A failure inside a batch is
retried image by image so one bad request never fails its neighbours.
"""

from __future__ import annotations

import queue
import threading
import time
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


class Batcher:
    def __init__(self, detector: Detector, *, max_batch: int = 8, window_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.detector = detector
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.images_done = 0
        self.model_seconds = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="flakefinder-batcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, image: np.ndarray, context: ImagingContext) -> Future[BatchResult]:
        if self._thread is None:
            raise RuntimeError("Batcher.start() was not called")
        fut: Future[BatchResult] = Future()
        self._queue.put(_Job(image, context, fut, time.perf_counter()))
        return fut

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        deadline = time.perf_counter() + self.window_s
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            groups: dict[ImagingContext, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.context, []).append(job)
            for context, group in groups.items():
                self._run_group(context, group)

    def _run_group(self, context: ImagingContext, group: list[_Job]) -> None:
        start = time.perf_counter()
        det = self.detector
        try:
            if isinstance(det, BatchDetector) and len(group) > 1:
                outputs = det.detect_batch([j.image for j in group], context)
            else:
                outputs = [self.detector.detect(j.image, context) for j in group]
        except Exception:
            if len(group) == 1:
                group[0].future.set_exception(_current_exception())
                return
            for job in group:  # isolate the failing image
                self._run_group(context, [job])
            return
        model_s = time.perf_counter() - start
        with self._lock:
            self.images_done += len(group)
            self.model_seconds += model_s
        for job, dets in zip(group, outputs, strict=True):
            job.future.set_result(BatchResult(dets, len(group), start - job.submitted, model_s))


def _current_exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc
