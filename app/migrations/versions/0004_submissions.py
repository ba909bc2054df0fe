"""Students' submitted models (issue 34 part 3): the submissions table.

Revision ID: 0004_submissions
Revises: 0003_login_delays
Create Date: 2026-12-07 05:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_submissions'
down_revision = '0003_login_delays'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('submissions',
    sa.Column('id', sa.String(length=12), nullable=False),
    sa.Column('dataset', sa.String(length=64), nullable=False),
    sa.Column('nickname', sa.String(length=40), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('queue_task_id', sa.String(length=64), nullable=True),
    sa.Column('filename', sa.String(length=120), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('notebook', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('params', sa.Integer(), nullable=True),
    sa.Column('layers', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('error_en', sa.Text(), nullable=True),
    sa.Column('error_vi', sa.Text(), nullable=True),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submissions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_dataset'), ['dataset'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_status'), ['status'], unique=False)


def downgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submissions_status'))
        batch_op.drop_index(batch_op.f('ix_submissions_owner'))
        batch_op.drop_index(batch_op.f('ix_submissions_dataset'))
        batch_op.drop_index(batch_op.f('ix_submissions_created_at'))
    op.drop_table('submissions')
