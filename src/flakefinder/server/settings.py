"""Server settings: one value passed to ``create_app``; nothing global."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flakefinder.intake import ImageIntake


def check_api_key(key: str | None, *, source: str = "the API key") -> str | None:
    """``key`` if usable; ``None`` stays "no key". An empty or blank key is an error.

    Raises
    ------
    ValueError
        For an empty or whitespace-only key (an empty ``FLAKEFINDER_API_KEY=`` must not
        silently turn authentication off), and for a key that an HTTP header cannot carry
        (anything but printable ASCII, or white space at either end).
    """
    if key is None:
        return None
    if not key.strip():
        raise ValueError(
            f"{source} is empty; give a real key, or unset it to run without one"
            " (then the server listens on 127.0.0.1 only)"
        )
    bad = [c for c in key if not " " <= c <= "~"]
    if bad:
        raise ValueError(
            f"{source} holds {bad[0]!r}: an API key must be printable ASCII (letters, digits,"
            " punctuation), since the X-API-Key header cannot carry anything else"
        )
    if key != key.strip():
        raise ValueError(f"{source} starts or ends with a space, which HTTP headers drop")
    return key


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts (seconds) and sizes for client connections (``server.connections``)."""

    max_connections: int = 512  # open at once; the longest idle ones make room past it
    header_timeout_s: float = 10.0  # request line and headers must arrive within this
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    body_timeout_s: float = 30.0  # longest pause while a request body arrives (then 408)
    max_header_bytes: int = 64 * 1024  # request line and headers together

    def __post_init__(self) -> None:
        if self.max_connections < 2:
            raise ValueError("max_connections must be at least 2")
        for name in ("header_timeout_s", "keep_alive_s", "body_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ValueError(f"{name} must lie in (0, 3600] seconds, got {value}")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")

    def within_file_limit(self) -> ConnectionLimits:
        """These limits with ``max_connections`` at most half the process's open-file limit
        (the other half is for the database, images and the listening socket)."""
        try:
            import resource
        except ImportError:  # Windows: no such limit to respect
            return self
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or self.max_connections <= soft // 2:
            return self
        return replace(self, max_connections=max(2, soft // 2))


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
    # the request's profile_id; the first one serves requests that name none. A request that
    # names a profile and gives no pixel size, oxide or materials gets that profile's, unless
    # the server was started with them (serve --um-per-px/--oxide-nm/--materials): those are
    # named in ``fixed`` ("um_per_px", "oxide_nm", "materials") and hold for every profile.
    setups: tuple[str, ...] = ()
    fixed: frozenset[str] = frozenset()
    max_image_pixels: int = 50_000_000  # decoded uploads: width x height, checked from the header
    # Memory (see flakefinder.intake): uploads of more pixels are shrunk to this many for
    # detection and the Setup page (None: never); decoded images are reserved from the server's
    # budget (at most request_memory_mb for one image) and wait up to memory_wait_s for it.
    max_work_pixels: int | None = 8_000_000
    memory_budget_mb: float = 1024.0
    request_memory_mb: float = 768.0
    memory_wait_s: float = 30.0
    setup_session_mb: float = 64.0  # images and regions of one Setup-page session
    # Host names the server answers to besides loopback names and IP addresses (DNS rebinding):
    # serve --allowed-host NAME (repeatable; "*" turns the check off). bind_host is --host.
    allowed_hosts: tuple[str, ...] = ()
    bind_host: str = "127.0.0.1"
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        check_api_key(self.api_key)
        unknown = set(self.fixed) - {"um_per_px", "oxide_nm", "materials"}
        if unknown:
            raise ValueError(
                f"fixed names um_per_px, oxide_nm or materials, not {', '.join(sorted(unknown))}"
            )
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
