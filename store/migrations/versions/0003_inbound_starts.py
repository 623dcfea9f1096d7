"""inbound starts: the workflow input of a flow started by an inbound message

Revision ID: 0003_inbound_starts
Revises: 0002_platform
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_inbound_starts"
down_revision = "0002_platform"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.add_column(sa.Column("start_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.drop_column("start_enc")
