"""audit log: hash chain, chain head, append-only triggers

Revision ID: 0004_audit
Revises: 0003_inbound_starts
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_audit"
down_revision = "0003_inbound_starts"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table("auditentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("break_glass", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_unique_constraint("uq_auditentry_seq", ["seq"])
    head = op.create_table(
        "audithead",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    # Append-only: careflow never updates or deletes an entry; the database refuses it too. (Whoever
    # owns the database can drop the triggers: the chain is what finds that.)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION careflow_audit_append_only() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'the audit log "
            "is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER auditentry_append_only BEFORE UPDATE OR DELETE ON auditentry FOR EACH ROW EXECUTE "
            "FUNCTION careflow_audit_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER auditentry_no_{event.lower()} BEFORE {event} ON auditentry BEGIN SELECT "
                "RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER auditentry_append_only ON auditentry")
        op.execute("DROP FUNCTION careflow_audit_append_only()")
    else:
        op.execute("DROP TRIGGER auditentry_no_update")
        op.execute("DROP TRIGGER auditentry_no_delete")
    op.drop_table("audithead")
    with op.batch_alter_table("auditentry", schema=None) as batch_op:
        batch_op.drop_constraint("uq_auditentry_seq", type_="unique")
        batch_op.drop_column("entry_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
        batch_op.drop_column("break_glass")
