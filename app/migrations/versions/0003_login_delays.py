"""Sign-in delays per (name, address) replace the per-account lock-out (issue 36 item 6).

Revision ID: 0003_login_delays
Revises: 0002_instructor
Create Date: 2026-12-07 05:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_login_delays'
down_revision = '0002_instructor'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_delays',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', 'address')
    )
    with op.batch_alter_table('login_delays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_delays_updated_at'), ['updated_at'], unique=False)
    with op.batch_alter_table('instructors', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')


def downgrade():
    with op.batch_alter_table('instructors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('login_delays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_delays_updated_at'))
    op.drop_table('login_delays')
