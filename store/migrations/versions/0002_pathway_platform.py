"""pathway platform: a flow's parties; why an inbound message was refused or left for triage

Revision ID: 0002_platform
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002_platform"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parties_json", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("inboundmessage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("patient_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index("ix_inboundmessage_patient_hash", ["patient_hash"])
        batch_op.add_column(sa.Column("triaged_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("triaged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inboundmessage", schema=None) as batch_op:
        batch_op.drop_column("triaged_at")
        batch_op.drop_column("triaged_by")
        batch_op.drop_index("ix_inboundmessage_patient_hash")
        batch_op.drop_column("patient_hash")
        batch_op.drop_column("status_reason")
    with op.batch_alter_table("flow", schema=None) as batch_op:
        batch_op.drop_column("parties_json")
