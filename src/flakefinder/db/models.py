"""SQLAlchemy 2 ORM tables. Internal to ``flakefinder.db``: ORM objects never leave a session.

Other modules get frozen dataclasses from :mod:`flakefinder.db.records`. A schema change here needs a
new Alembic revision in ``flakefinder/db/migrations/versions`` (``tests/test_db_migrations.py`` checks
that the migrated schema equals this metadata).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SCAN_STATUSES = ("running", "finished", "interrupted")
FLAKE_STATUSES = ("new", "used", "rejected", "candidate")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ChipRow(Base):
    __tablename__ = "chips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    materials: Mapped[str] = mapped_column(Text, default="")  # comma-separated, e.g. "graphene,hBN"
    oxide_thickness_nm: Mapped[float] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScanRow(Base):
    __tablename__ = "scans"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'finished', 'interrupted')", name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chips.id", ondelete="CASCADE"), index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    objective: Mapped[str] = mapped_column(String(100), default="")
    um_per_px: Mapped[float] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(100), default="")
    detector_version: Mapped[str] = mapped_column(String(100), default="")
    n_tiles_planned: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)


class ImageRow(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("scan_id", "tile_index", name="uq_images_scan_tile"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    tile_index: Mapped[int] = mapped_column(Integer)
    x_um: Mapped[float] = mapped_column(Float)
    y_um: Mapped[float] = mapped_column(Float)
    z_um: Mapped[float] = mapped_column(Float)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    um_per_px: Mapped[float] = mapped_column(Float)
    file_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FlakeRow(Base):
    __tablename__ = "flakes"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'used', 'rejected', 'candidate')", name="status_valid"),
        Index("ix_flakes_bbox_x", "bbox_x_min_um", "bbox_x_max_um"),
        Index("ix_flakes_bbox_y", "bbox_y_min_um", "bbox_y_max_um"),
        Index("ix_flakes_material_layer_class", "material", "layer_class"),
        # the chip map's viewport queries (flakefinder.db.viewport): one chip, a bbox range
        Index(
            "ix_flakes_chip_bbox",
            "chip_id",
            "bbox_x_min_um",
            "bbox_x_max_um",
            "bbox_y_min_um",
            "bbox_y_max_um",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(
        ForeignKey("images.id", ondelete="SET NULL"), nullable=True, index=True
    )
    chip_id: Mapped[int] = mapped_column(ForeignKey("chips.id", ondelete="CASCADE"), index=True)
    material: Mapped[str] = mapped_column(String(50), index=True)
    layer_class: Mapped[str] = mapped_column(String(20), index=True)
    layer_count: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    confidence: Mapped[float] = mapped_column(Float, index=True)
    polygon_um: Mapped[list[list[float]]] = mapped_column(JSON)
    polygon_px: Mapped[list[list[float]]] = mapped_column(JSON)
    bbox_x_min_um: Mapped[float] = mapped_column(Float)
    bbox_y_min_um: Mapped[float] = mapped_column(Float)
    bbox_x_max_um: Mapped[float] = mapped_column(Float)
    bbox_y_max_um: Mapped[float] = mapped_column(Float)
    bbox_px: Mapped[list[float]] = mapped_column(JSON)
    area_um2: Mapped[float] = mapped_column(Float, index=True)
    centroid_x_um: Mapped[float] = mapped_column(Float)
    centroid_y_um: Mapped[float] = mapped_column(Float)
    contrast_rgb: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    detector: Mapped[str] = mapped_column(String(100), default="")
    detector_version: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DesignRow(Base):
    __tablename__ = "designs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    layers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")


PASS_KINDS = ("overview", "search", "revisit")
REVISIT_STATUSES = ("ok", "not_found", "focus_failed", "outside_limits", "too_large")


class PassRow(Base):
    """One pass of a hunt (issue 15): the overview of a chip, the search of a scan, or a
    revisit of a scan's flakes at another objective."""

    __tablename__ = "passes"
    __table_args__ = (
        CheckConstraint("kind IN ('overview', 'search', 'revisit')", name="kind_valid"),
        CheckConstraint("status IN ('running', 'finished', 'interrupted')", name="status_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip_id: Mapped[int] = mapped_column(ForeignKey("chips.id", ondelete="CASCADE"), index=True)
    scan_id: Mapped[int | None] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    objective: Mapped[str] = mapped_column(String(100), default="")
    um_per_px: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="running")
    n_planned: Mapped[int] = mapped_column(Integer, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RevisitRow(Base):
    """One flake's visit in a revisit pass: outcome and refined outline / layer number."""

    __tablename__ = "revisits"
    __table_args__ = (
        UniqueConstraint("pass_id", "flake_id", name="uq_revisits_pass_flake"),
        CheckConstraint(
            "status IN ('ok', 'not_found', 'focus_failed', 'outside_limits', 'too_large')",
            name="status_valid",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pass_id: Mapped[int] = mapped_column(ForeignKey("passes.id", ondelete="CASCADE"), index=True)
    flake_id: Mapped[int] = mapped_column(ForeignKey("flakes.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    objective: Mapped[str] = mapped_column(String(100), default="")
    um_per_px: Mapped[float] = mapped_column(Float)
    focus_z_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    material: Mapped[str | None] = mapped_column(String(50), nullable=True)
    layer_class: Mapped[str | None] = mapped_column(String(20), nullable=True)
    layer_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    polygon_um: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    polygon_px: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    area_um2: Mapped[float | None] = mapped_column(Float, nullable=True)
    contrast_rgb: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    iou_with_search: Mapped[float | None] = mapped_column(Float, nullable=True)
    detector: Mapped[str] = mapped_column(String(100), default="")
    detector_version: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CloseupRow(Base):
    """A close-up image of a visit: a file next to the scan's tiles, and where it was taken."""

    __tablename__ = "closeups"
    __table_args__ = (
        UniqueConstraint("revisit_id", "frame_index", name="uq_closeups_revisit_frame"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revisit_id: Mapped[int] = mapped_column(
        ForeignKey("revisits.id", ondelete="CASCADE"), index=True
    )
    frame_index: Mapped[int] = mapped_column(Integer)
    x_um: Mapped[float] = mapped_column(Float)
    y_um: Mapped[float] = mapped_column(Float)
    z_um: Mapped[float] = mapped_column(Float)
    z_offset_um: Mapped[float] = mapped_column(Float, default=0.0)
    exposure_ms: Mapped[float] = mapped_column(Float)
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    um_per_px: Mapped[float] = mapped_column(Float)
    sharpness: Mapped[float] = mapped_column(Float, default=0.0)
    file_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
