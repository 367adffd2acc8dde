"""Typed request/response bodies of the inference API (pydantic; shared by server and client)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flakefinder.domain import Detection, LayerClass


class FlakeOut(BaseModel):
    material: str
    layer_class: LayerClass
    layer_count: int | None = Field(
        None, description="Exact layer number estimated from optical contrast"
    )
    confidence: float
    polygon_px: list[tuple[float, float]]
    bbox_px: tuple[float, float, float, float] = Field(description="x_min, y_min, x_max, y_max")
    area_px: float
    area_um2: float
    contrast_rgb: tuple[float, float, float] | None = Field(
        None,
        description="Contrast C = I/I_substrate - 1 per channel (R, G, B); negative for a flake"
        " darker than the substrate, as in setup profiles",
    )

    @classmethod
    def from_detection(cls, d: Detection, um_per_px: float) -> FlakeOut:
        return cls(
            material=d.material,
            layer_class=d.layer_class,
            layer_count=d.layer_count,
            confidence=float(d.confidence),
            polygon_px=[(float(x), float(y)) for x, y in d.polygon_px],
            bbox_px=tuple(float(v) for v in d.bbox_px),  # type: ignore[arg-type]
            area_px=float(d.area_px),
            area_um2=float(d.area_px) * um_per_px**2,
            contrast_rgb=None
            if d.contrast_rgb is None
            else tuple(float(c) for c in d.contrast_rgb),  # type: ignore[arg-type]
        )

    def to_detection(self) -> Detection:
        return Detection(
            material=self.material,
            layer_class=self.layer_class,
            confidence=self.confidence,
            polygon_px=tuple(self.polygon_px),
            bbox_px=self.bbox_px,
            area_px=self.area_px,
            layer_count=self.layer_count,
            contrast_rgb=self.contrast_rgb,
        )


class ImageInfo(BaseModel):
    filename: str | None = None
    width_px: int
    height_px: int


class Timing(BaseModel):
    queue_ms: float = Field(description="Waiting for a batch slot")
    model_ms: float = Field(description="Inside the detector (shared by the batch)")
    total_ms: float = Field(description="Whole request inside the server")


class DetectResponse(BaseModel):
    image: ImageInfo
    flakes: list[FlakeOut]
    detector: str
    model_version: str
    batch_size: int = Field(description="How many images shared the model call")
    timing: Timing


class BatchResponse(BaseModel):
    results: list[DetectResponse]


class SetupInfo(BaseModel):
    """One setup profile the server holds, and the detector that serves it."""

    profile_id: str = Field(description="Send as the profile_id query parameter to use it")
    name: str
    detector: str
    model_version: str
    default: bool = Field(description="Used by requests that name no profile_id")


class ModelInfo(BaseModel):
    detector: str
    model_version: str
    materials: list[str]
    oxide_thickness_nm: float
    um_per_px: float
    max_batch: int
    max_upload_mb: float
    setups: list[SetupInfo] = Field(
        default_factory=list, description="Setup profiles held (serve --setup FILE, repeatable)"
    )


class Health(BaseModel):
    status: str
    detector: str
    requests_served: int
    images_decoded: int = Field(0, description="Uploads decoded since the server started")
    images_dropped: int = Field(
        0, description="Images not decoded or not detected because their client had gone"
    )
    image_memory_mb: float = Field(0.0, description="Memory reserved for decoded images now")
    image_memory_peak_mb: float = Field(0.0, description="The most reserved at once so far")


class ErrorBody(BaseModel):
    detail: str
