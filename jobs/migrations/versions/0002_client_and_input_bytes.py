"""Who asked, as a stable identity (quotas and fairness), and the bytes of the kept input (per-client quota).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("client", sa.String(200), nullable=True))
        batch.add_column(sa.Column("input_bytes", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_jobs_client", "jobs", ["client"])


def downgrade() -> None:
    op.drop_index("ix_jobs_client", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("input_bytes")
        batch.drop_column("client")
