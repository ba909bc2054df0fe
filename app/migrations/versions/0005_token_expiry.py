"""API tokens expire (issue 36 item 8): api_tokens.expires_at; tokens made before this get 90 days.

Revision ID: 0005_token_expiry
Revises: 0004_submissions
Create Date: 2026-12-07 05:20:00

"""
import datetime as dt

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_token_expiry'
down_revision = '0004_submissions'
branch_labels = None
depends_on = None

EXISTING_DAYS = 90  # the default lifetime, counted from the upgrade for tokens that had none


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=EXISTING_DAYS)
    tokens = sa.table('api_tokens', sa.column('expires_at', sa.DateTime(timezone=True)))
    op.execute(tokens.update().values(expires_at=until))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
