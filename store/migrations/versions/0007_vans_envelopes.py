"""VANS transport: received envelopes (transport duplicates across restarts, refused envelopes for
triage), how each outbound message travelled, and Bundle.id look-ups on inbound messages

Revision ID: 0007_vans_envelopes
Revises: 0006_thread_ids
Create Date: 2026-11-30
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_vans_envelopes"
down_revision = "0006_thread_ids"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "inboundenvelope",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", _str(), nullable=False),
        sa.Column("envelope_identifier", _str(), nullable=True),
        sa.Column("message_identifier", _str(), nullable=True),
        sa.Column("kind", _str(), nullable=False),
        sa.Column("sender_gln", _str(), nullable=False),
        sa.Column("receiver_gln", _str(), nullable=False),
        sa.Column("partner_sor", _str(), nullable=False),
        sa.Column("status", _str(), nullable=False),
        sa.Column("reason_code", _str(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("message_header_id", _str(), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("answer_status", sa.Integer(), nullable=False),
        sa.Column("body_enc", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inboundenvelope", schema=None) as batch_op:
        batch_op.create_index("ix_inboundenvelope_ref", ["ref"], unique=True)
        batch_op.create_index("ix_inboundenvelope_envelope_identifier", ["envelope_identifier"], unique=True)
        batch_op.create_index("ix_inboundenvelope_message_identifier", ["message_identifier"])
        batch_op.create_index("ix_inboundenvelope_status", ["status"])
        batch_op.create_index("ix_inboundenvelope_message_header_id", ["message_header_id"])
        batch_op.create_index("ix_inboundenvelope_received_at", ["received_at"])
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transport", _str(), nullable=False, server_default="process-message"))
        batch_op.add_column(sa.Column("envelope_identifier", _str(), nullable=True))
        batch_op.add_column(sa.Column("transport_receipt", _str(), nullable=True))
        batch_op.create_index("ix_outboundmessage_envelope_identifier", ["envelope_identifier"])
    with op.batch_alter_table("inboundmessage", schema=None) as batch_op:
        batch_op.create_index("ix_inboundmessage_bundle_id", ["bundle_id"])


def downgrade() -> None:
    with op.batch_alter_table("inboundmessage", schema=None) as batch_op:
        batch_op.drop_index("ix_inboundmessage_bundle_id")
    with op.batch_alter_table("outboundmessage", schema=None) as batch_op:
        batch_op.drop_index("ix_outboundmessage_envelope_identifier")
        batch_op.drop_column("transport_receipt")
        batch_op.drop_column("envelope_identifier")
        batch_op.drop_column("transport")
    op.drop_table("inboundenvelope")
