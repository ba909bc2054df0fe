"""Runs get a number on their data set (the "#n" of a run's readable name); existing runs are
numbered per data set in the order they were created.

Revision ID: 0007_run_number
Revises: 0006_reason_msgid
Create Date: 2026-12-07 09:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_run_number'
down_revision = '0006_reason_msgid'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
        batch_op.create_index('ix_runs_dataset_number', ['dataset', 'number'], unique=False)
    runs = sa.table('runs', sa.column('id', sa.String), sa.column('dataset', sa.String),
                    sa.column('created_at', sa.DateTime), sa.column('number', sa.Integer))
    bind = op.get_bind()
    counts = {}
    for row_id, dataset in bind.execute(sa.select(runs.c.id, runs.c.dataset)
                                        .order_by(runs.c.created_at, runs.c.id)).all():
        counts[dataset] = counts.get(dataset, 0) + 1
        bind.execute(runs.update().where(runs.c.id == row_id).values(number=counts[dataset]))


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_dataset_number')
        batch_op.drop_column('number')
