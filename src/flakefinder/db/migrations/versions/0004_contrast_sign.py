"""Stored flake contrast takes the profiles' sign: C = I/I_substrate - 1 (issue 17).

Detectors used to store C = 1 - I/I_substrate (positive for graphene on 90 nm SiO2) while setup
profiles, ``setup show`` and calibration use I/I_substrate - 1. Existing rows of ``flakes`` and
``revisits`` are negated so that every stored, exported and displayed contrast has one sign
convention.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _negate_stored_contrast() -> None:
    conn = op.get_bind()
    for name in ("flakes", "revisits"):  # revisits: the refined outlines of the hunt (0003)
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("contrast_rgb", sa.JSON))
        rows = conn.execute(
            sa.select(table.c.id, table.c.contrast_rgb).where(table.c.contrast_rgb.is_not(None))
        ).all()
        for row_id, rgb in rows:
            if not isinstance(rgb, list):
                continue  # JSON null stored as a value: nothing to flip
            conn.execute(
                table.update()
                .where(table.c.id == row_id)
                .values(contrast_rgb=[-float(v) for v in rgb])
            )


def upgrade() -> None:
    """Negate every stored ``flakes.contrast_rgb`` and ``revisits.contrast_rgb``."""
    _negate_stored_contrast()


def downgrade() -> None:
    """Negate them back (the old 1 - I/I_substrate convention)."""
    _negate_stored_contrast()
