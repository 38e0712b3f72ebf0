"""Indexes on the columns that name files: the orphan sweep asks which of a folder's files any row names.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
COLUMNS = ("output_path", "master_path", "input_path")


def upgrade() -> None:
    for column in COLUMNS:
        op.create_index("ix_jobs_%s" % column, "jobs", [column])


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index("ix_jobs_%s" % column, "jobs")
