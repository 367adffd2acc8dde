"""Initial schema: chips, scans, images, flakes, designs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("materials", sa.Text(), nullable=False),
        sa.Column("oxide_thickness_nm", sa.Float(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chips")),
        sa.UniqueConstraint("name", name=op.f("uq_chips_name")),
    )
    op.create_table(
        "designs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designs")),
    )
    op.create_index(op.f("ix_designs_name"), "designs", ["name"], unique=False)

    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chip_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("objective", sa.String(length=100), nullable=False),
        sa.Column("um_per_px", sa.Float(), nullable=False),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("detector_version", sa.String(length=100), nullable=False),
        sa.Column("n_tiles_planned", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'interrupted')", name=op.f("ck_scans_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["chip_id"], ["chips.id"], name=op.f("fk_scans_chip_id_chips"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.create_index(op.f("ix_scans_chip_id"), "scans", ["chip_id"], unique=False)
    op.create_index(op.f("ix_scans_status"), "scans", ["status"], unique=False)

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("tile_index", sa.Integer(), nullable=False),
        sa.Column("x_um", sa.Float(), nullable=False),
        sa.Column("y_um", sa.Float(), nullable=False),
        sa.Column("z_um", sa.Float(), nullable=False),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("um_per_px", sa.Float(), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_images_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("scan_id", "tile_index", name="uq_images_scan_tile"),
    )
    op.create_table(
        "flakes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("chip_id", sa.Integer(), nullable=False),
        sa.Column("material", sa.String(length=50), nullable=False),
        sa.Column("layer_class", sa.String(length=20), nullable=False),
        sa.Column("layer_count", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("polygon_um", sa.JSON(), nullable=False),
        sa.Column("polygon_px", sa.JSON(), nullable=False),
        sa.Column("bbox_x_min_um", sa.Float(), nullable=False),
        sa.Column("bbox_y_min_um", sa.Float(), nullable=False),
        sa.Column("bbox_x_max_um", sa.Float(), nullable=False),
        sa.Column("bbox_y_max_um", sa.Float(), nullable=False),
        sa.Column("bbox_px", sa.JSON(), nullable=False),
        sa.Column("area_um2", sa.Float(), nullable=False),
        sa.Column("centroid_x_um", sa.Float(), nullable=False),
        sa.Column("centroid_y_um", sa.Float(), nullable=False),
        sa.Column("contrast_rgb", sa.JSON(), nullable=True),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("detector_version", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('new', 'used', 'rejected', 'candidate')",
            name=op.f("ck_flakes_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["chip_id"], ["chips.id"], name=op.f("fk_flakes_chip_id_chips"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_flakes_image_id_images"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_flakes_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flakes")),
    )
    op.create_index(op.f("ix_flakes_area_um2"), "flakes", ["area_um2"], unique=False)
    op.create_index("ix_flakes_bbox_x", "flakes", ["bbox_x_min_um", "bbox_x_max_um"], unique=False)
    op.create_index("ix_flakes_bbox_y", "flakes", ["bbox_y_min_um", "bbox_y_max_um"], unique=False)
    op.create_index(op.f("ix_flakes_chip_id"), "flakes", ["chip_id"], unique=False)
    op.create_index(op.f("ix_flakes_confidence"), "flakes", ["confidence"], unique=False)
    op.create_index(op.f("ix_flakes_image_id"), "flakes", ["image_id"], unique=False)
    op.create_index(op.f("ix_flakes_layer_class"), "flakes", ["layer_class"], unique=False)
    op.create_index(op.f("ix_flakes_layer_count"), "flakes", ["layer_count"], unique=False)
    op.create_index(op.f("ix_flakes_material"), "flakes", ["material"], unique=False)
    op.create_index(
        "ix_flakes_material_layer_class", "flakes", ["material", "layer_class"], unique=False
    )
    op.create_index(op.f("ix_flakes_scan_id"), "flakes", ["scan_id"], unique=False)
    op.create_index(op.f("ix_flakes_status"), "flakes", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_flakes_status"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_scan_id"), table_name="flakes")
    op.drop_index("ix_flakes_material_layer_class", table_name="flakes")
    op.drop_index(op.f("ix_flakes_material"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_layer_count"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_layer_class"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_image_id"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_confidence"), table_name="flakes")
    op.drop_index(op.f("ix_flakes_chip_id"), table_name="flakes")
    op.drop_index("ix_flakes_bbox_y", table_name="flakes")
    op.drop_index("ix_flakes_bbox_x", table_name="flakes")
    op.drop_index(op.f("ix_flakes_area_um2"), table_name="flakes")

    op.drop_table("flakes")
    op.drop_table("images")
    op.drop_index(op.f("ix_scans_status"), table_name="scans")
    op.drop_index(op.f("ix_scans_chip_id"), table_name="scans")

    op.drop_table("scans")
    op.drop_index(op.f("ix_designs_name"), table_name="designs")

    op.drop_table("designs")
    op.drop_table("chips")
