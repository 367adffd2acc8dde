"""Server settings: one value passed to ``create_app``; nothing global."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


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

    def __post_init__(self) -> None:
        from flakefinder.server.security import check_api_key

        check_api_key(self.api_key)
        if not self.max_upload_mb > 0 or self.max_image_pixels < 64:
            raise ValueError("max_upload_mb and max_image_pixels must be positive")

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
