"""Hunt passes (overview, search, revisit), revisits of flakes and their close-up images.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the ``passes``, ``revisits`` and ``closeups`` tables."""
    op.create_table(
        "passes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chip_id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("objective", sa.String(length=100), nullable=False),
        sa.Column("um_per_px", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("n_planned", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('overview', 'search', 'revisit')", name=op.f("ck_passes_kind_valid")
        ),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'interrupted')", name=op.f("ck_passes_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["chip_id"], ["chips.id"], name=op.f("fk_passes_chip_id_chips"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_passes_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passes")),
    )
    op.create_index(op.f("ix_passes_chip_id"), "passes", ["chip_id"], unique=False)
    op.create_index(op.f("ix_passes_scan_id"), "passes", ["scan_id"], unique=False)

    op.create_table(
        "revisits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=False),
        sa.Column("flake_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("objective", sa.String(length=100), nullable=False),
        sa.Column("um_per_px", sa.Float(), nullable=False),
        sa.Column("focus_z_um", sa.Float(), nullable=True),
        sa.Column("material", sa.String(length=50), nullable=True),
        sa.Column("layer_class", sa.String(length=20), nullable=True),
        sa.Column("layer_count", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("polygon_um", sa.JSON(), nullable=True),
        sa.Column("polygon_px", sa.JSON(), nullable=True),
        sa.Column("area_um2", sa.Float(), nullable=True),
        sa.Column("contrast_rgb", sa.JSON(), nullable=True),
        sa.Column("iou_with_search", sa.Float(), nullable=True),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("detector_version", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('ok', 'not_found', 'focus_failed', 'outside_limits', 'too_large')",
            name=op.f("ck_revisits_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["flake_id"], ["flakes.id"], name=op.f("fk_revisits_flake_id_flakes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pass_id"], ["passes.id"], name=op.f("fk_revisits_pass_id_passes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisits")),
        sa.UniqueConstraint("pass_id", "flake_id", name="uq_revisits_pass_flake"),
    )
    op.create_index(op.f("ix_revisits_flake_id"), "revisits", ["flake_id"], unique=False)
    op.create_index(op.f("ix_revisits_pass_id"), "revisits", ["pass_id"], unique=False)

    op.create_table(
        "closeups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revisit_id", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("x_um", sa.Float(), nullable=False),
        sa.Column("y_um", sa.Float(), nullable=False),
        sa.Column("z_um", sa.Float(), nullable=False),
        sa.Column("z_offset_um", sa.Float(), nullable=False),
        sa.Column("exposure_ms", sa.Float(), nullable=False),
        sa.Column("width_px", sa.Integer(), nullable=False),
        sa.Column("height_px", sa.Integer(), nullable=False),
        sa.Column("um_per_px", sa.Float(), nullable=False),
        sa.Column("sharpness", sa.Float(), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["revisit_id"],
            ["revisits.id"],
            name=op.f("fk_closeups_revisit_id_revisits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_closeups")),
        sa.UniqueConstraint("revisit_id", "frame_index", name="uq_closeups_revisit_frame"),
    )
    op.create_index(op.f("ix_closeups_revisit_id"), "closeups", ["revisit_id"], unique=False)


def downgrade() -> None:
    """Drop the hunt tables."""
    op.drop_index(op.f("ix_closeups_revisit_id"), table_name="closeups")
    op.drop_table("closeups")
    op.drop_index(op.f("ix_revisits_pass_id"), table_name="revisits")
    op.drop_index(op.f("ix_revisits_flake_id"), table_name="revisits")
    op.drop_table("revisits")
    op.drop_index(op.f("ix_passes_scan_id"), table_name="passes")
    op.drop_index(op.f("ix_passes_chip_id"), table_name="passes")
    op.drop_table("passes")
