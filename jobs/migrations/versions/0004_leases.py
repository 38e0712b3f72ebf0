"""Columns for jobs run on other hosts (issue 22): which host runs a job (its name, and the claim of the one process
that holds it) and until when its lease holds, a cancel asked for from another host, when the front handed it to the
broker, and how often its host died under it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # batch: SQLite cannot add every kind of column in place
        batch.add_column(sa.Column("host", sa.String(200), nullable=True))
        batch.add_column(sa.Column("claim", sa.String(32), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("published_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("host_losses", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in ("host_losses", "published_at", "cancel_requested", "lease_until", "claim", "host"):
            batch.drop_column(column)
