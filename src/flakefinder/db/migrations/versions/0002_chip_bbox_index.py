"""Chip map viewport index: flakes by (chip, bbox x min/max, bbox y min/max).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``ix_flakes_chip_bbox``."""
    op.create_index(
        "ix_flakes_chip_bbox",
        "flakes",
        ["chip_id", "bbox_x_min_um", "bbox_x_max_um", "bbox_y_min_um", "bbox_y_max_um"],
        unique=False,
    )


def downgrade() -> None:
    """Drop ``ix_flakes_chip_bbox``."""
    op.drop_index("ix_flakes_chip_bbox", table_name="flakes")
