"""Shared helpers for server tests: a deterministic fake detector and a real uvicorn runner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from flakefinder.domain import Detection, ImagingContext, LayerClass, check_rgb_image


class DarkSquareDetector:
    """Finds the bounding box of pixels darker than 100 (one flake, or none)."""

    name = "darksquare"
    version = "1"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def detect(self, image: np.ndarray, context: ImagingContext) -> list[Detection]:
        check_rgb_image(image)
        ys, xs = np.nonzero(image.mean(axis=2) < 100)
        if len(xs) == 0:
            return []
        x0, x1, y0, y1 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
        return [
            Detection(
                material=context.materials[0],
                layer_class=LayerClass.FEW,
                confidence=0.9,
                polygon_px=((x0, y0), (x1, y0), (x1, y1), (x0, y1)),
                bbox_px=(x0, y0, x1, y1),
                area_px=(x1 - x0) * (y1 - y0),
                layer_count=3,
            )
        ]

    def detect_batch(
        self, images: list[np.ndarray], context: ImagingContext
    ) -> list[list[Detection]]:
        self.batch_sizes.append(len(images))
        return [self.detect(im, context) for im in images]


def square_image(
    x0: int = 20, y0: int = 10, size: int = 16, shape: tuple[int, int] = (64, 80)
) -> np.ndarray:
    image = np.full((*shape, 3), 200, np.uint8)
    image[y0 : y0 + size, x0 : x0 + size] = 40
    return image


@contextmanager
def running_server(app: object) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 (free port); yield its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.01):
        if server.started:
            started.set()
        elif not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
