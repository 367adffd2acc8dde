"""Server settings: one value passed to ``create_app``; nothing global."""

from __future__ import annotations

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
    api_key: str | None = None  # when set, every /api call needs header X-API-Key
    max_upload_mb: float = 25.0
    max_batch: int = 8  # images per model call when requests arrive together
    batch_window_ms: float = 5.0  # how long the batcher waits for more requests
    database_url: str | None = None  # enables the web UI (flake browser, designer)
    detector_options: dict[str, str] = field(default_factory=dict)
    # Setup profile files (serve --setup FILE, repeatable): one detector per profile, chosen by
    # the request's profile_id; the first one serves requests that name none.
    setups: tuple[str, ...] = ()
