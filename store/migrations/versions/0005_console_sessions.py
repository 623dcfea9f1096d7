"""console sessions kept server-side (logout and a new login end them)

Revision ID: 0005_console_sessions
Revises: 0004_audit
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_console_sessions"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consolelogin",
        sa.Column("sid_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("organisations_json", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("sid_hash"),
    )
    with op.batch_alter_table("consolelogin", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consolelogin_subject"), ["subject"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consolelogin", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consolelogin_subject"))
    op.drop_table("consolelogin")
