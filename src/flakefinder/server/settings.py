"""Server settings: one value passed to ``create_app``; nothing global."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flakefinder.intake import ImageIntake


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs; ``flakefinder serve`` fills it from its options."""

    detector: str = "contrast"
    model_dir: str | None = None  # None: the shipped default model
    device: str = "auto"
    materials: tuple[str, ...] = ("graphene",)
    oxide_thickness_nm: float = 90.0
    um_per_px: float = 0.2
    api_key: str | None = None  # when set, every state-changing request (and reading) needs it
    public_read: bool = False  # with a key: GET/HEAD pages and API answer without one
    max_upload_mb: float = 25.0
    max_batch: int = 8  # images per model call when requests arrive together
    batch_window_ms: float = 5.0  # how long the batcher waits for more requests
    database_url: str | None = None  # enables the web UI (flake browser, designer)
    detector_options: dict[str, str] = field(default_factory=dict)
    # Setup profile files (serve --setup FILE, repeatable): one detector per profile, chosen by
    # the request's profile_id; the first one serves requests that name none.
    setups: tuple[str, ...] = ()
    max_image_pixels: int = 50_000_000  # decoded uploads: width x height, checked from the header
    # Memory (see flakefinder.intake): uploads of more pixels are shrunk to this many for
    # detection and the Setup page (None: never); decoded images are reserved from the server's
    # budget (at most request_memory_mb for one image) and wait up to memory_wait_s for it.
    max_work_pixels: int | None = 8_000_000
    memory_budget_mb: float = 1024.0
    request_memory_mb: float = 768.0
    memory_wait_s: float = 30.0
    setup_session_mb: float = 64.0  # images and regions of one Setup-page session

    def __post_init__(self) -> None:
        from flakefinder.server.security import check_api_key

        check_api_key(self.api_key)
        if not self.max_upload_mb > 0 or self.max_image_pixels < 64:
            raise ValueError("max_upload_mb and max_image_pixels must be positive")
        if self.max_work_pixels is not None and self.max_work_pixels < 64 * 64:
            raise ValueError("max_work_pixels must be at least 4096 (64 x 64 px)")
        for name in ("memory_budget_mb", "request_memory_mb", "setup_session_mb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of MiB, got {value}")
        if not (math.isfinite(self.memory_wait_s) and self.memory_wait_s >= 0):
            raise ValueError(f"memory_wait_s must be >= 0, got {self.memory_wait_s}")

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        env = os.environ
        values: dict[str, object] = {}
        if "FLAKEFINDER_API_KEY" in env:
            from flakefinder.server.security import check_api_key

            values["api_key"] = check_api_key(
                env["FLAKEFINDER_API_KEY"], source="FLAKEFINDER_API_KEY"
            )
        if "FLAKEFINDER_DATABASE_URL" in env:
            values["database_url"] = env["FLAKEFINDER_DATABASE_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def image_intake(settings: ServerSettings) -> ImageIntake:
    """The header limits, working size and memory budget ``settings`` ask for."""
    from flakefinder.image_header import ImageLimits
    from flakefinder.intake import ImageIntake
    from flakefinder.membudget import MemoryBudget

    mib = 2**20
    return ImageIntake(
        limits=ImageLimits(max_pixels=settings.max_image_pixels),
        max_work_pixels=settings.max_work_pixels,
        memory=MemoryBudget(
            limit_bytes=int(settings.memory_budget_mb * mib),
            request_limit_bytes=int(settings.request_memory_mb * mib),
            wait_s=settings.memory_wait_s,
        ),
    )
