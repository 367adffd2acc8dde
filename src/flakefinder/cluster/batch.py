"""Batch detection over image files on a Dask cluster.

Images are split into chunks; each chunk is one task that builds the detector once and runs
it over its images, so a worker per GPU keeps its model resident for the whole chunk. With
no scheduler address a ``LocalCluster`` of processes is started (one per core by default).

Multi-GPU machine: start one worker per GPU and point ``--scheduler`` at it, e.g.::

    dask scheduler --port 8786 &
    for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i dask worker tcp://127.0.0.1:8786 \
        --nworkers 1 --nthreads 1 & done
    flakefinder batch-detect images/ --out results/ --scheduler tcp://127.0.0.1:8786
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from flakefinder.domain import Detection, Detector, ImagingContext, keep_confident
from flakefinder.errors import FlakefinderError


@dataclass(frozen=True)
class DetectorRecipe:
    """A picklable recipe for a detector, built on each worker by the registry.

    ``name``, ``model`` (folder path), ``setup`` (profile file path), ``options`` (the
    ``--detector-option`` strings) and ``device`` are passed to
    :func:`flakefinder.detect.registry.create_detector`; ``min_score`` is the commands'
    ``--score``: detections below it are dropped, exactly as ``flakefinder detect`` does.
    """

    name: str
    options: tuple[tuple[str, str], ...] = ()
    model: str | None = None
    setup: str | None = None
    min_score: float | None = None
    device: str | None = None

    def build(self) -> Detector:
        """The detector this recipe names (profiles are loaded on the worker)."""
        from flakefinder.detect.registry import create_detector

        loaded = None
        if self.setup is not None:
            from flakefinder.detect.setup_io import load_setup

            loaded = load_setup(self.setup)
        return create_detector(
            self.name,
            model=self.model,
            setup=loaded,
            options=dict(self.options),
            min_score=self.min_score,
            device=self.device,
        )


@dataclass(frozen=True)
class ImageResult:
    path: str
    width_px: int
    height_px: int
    detections: tuple[Detection, ...]
    error: str | None = None  # why the image was skipped (unreadable, wrong size)


def detect_chunk(
    paths: Sequence[str], spec: DetectorRecipe, context: ImagingContext
) -> list[ImageResult]:
    """One task: build the detector, run it over ``paths``; bad images are reported, not fatal."""
    from flakefinder.imaging import load_image

    detector = spec.build()
    out = []
    for p in paths:
        try:
            image = load_image(p)
        except FlakefinderError as exc:
            out.append(ImageResult(p, 0, 0, (), str(exc)))
            continue
        dets = detector.detect(image, context)
        if spec.min_score is not None:
            dets = keep_confident(dets, spec.min_score)
        # masks stay on the worker: polygons describe the flakes and are cheap to send
        light = tuple(dataclasses.replace(d, mask=None) for d in dets)
        out.append(ImageResult(p, image.shape[1], image.shape[0], light))
    return out


def chunked(items: Sequence[str], size: int) -> Iterator[list[str]]:
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def detect_files(
    paths: Sequence[Path | str],
    spec: DetectorRecipe,
    context: ImagingContext,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    chunk_size: int = 16,
    on_result: Callable[[ImageResult], None] | None = None,
) -> list[ImageResult]:
    """Detect flakes in every file, in parallel; results come back in the order of ``paths``."""
    from dask.distributed import Client, LocalCluster, as_completed

    files = [str(p) for p in paths]
    chunks = list(chunked(files, chunk_size))
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = [
            client.submit(detect_chunk, chunk, spec, context, pure=False) for chunk in chunks
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        by_chunk: dict[int, list[ImageResult]] = {}
        for fut in as_completed(futures):
            results = fut.result()
            by_chunk[index[fut.key]] = results
            if on_result is not None:
                for r in results:
                    on_result(r)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [r for i in range(len(chunks)) for r in by_chunk[i]]


def database_image_paths(database_url: str, scan_id: int | None = None) -> list[Path]:
    """Image files stored for one scan (or every scan) of a flakefinder database."""
    from flakefinder.db import Database

    db = Database(database_url)
    try:
        scans = [scan_id] if scan_id is not None else [s.id for s in db.list_scans()]
        paths = []
        for sid in scans:
            for im in db.list_images(sid):
                if im.file_path:
                    paths.append(Path(im.file_path))
    finally:
        db.close()
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FlakefinderError(f"{len(missing)} stored image files are missing, e.g. {missing[0]}")
    return paths
