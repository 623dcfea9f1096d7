"""correlation ids on stored messages: CareCommunication thread and episode of care

Revision ID: 0006_thread_ids
Revises: 0005_console_sessions
Create Date: 2026-11-30
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_thread_ids"
down_revision = "0005_console_sessions"
branch_labels = None
depends_on = None

TABLES = ("inboundmessage", "outboundmessage")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("thread_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
            batch_op.add_column(sa.Column("episode_of_care_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
            batch_op.create_index(f"ix_{table}_thread_id", ["thread_id"])
            batch_op.create_index(f"ix_{table}_episode_of_care_id", ["episode_of_care_id"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_episode_of_care_id")
            batch_op.drop_index(f"ix_{table}_thread_id")
            batch_op.drop_column("episode_of_care_id")
            batch_op.drop_column("thread_id")
