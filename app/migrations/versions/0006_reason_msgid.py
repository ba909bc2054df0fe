"""Failure and refusal reasons stored as a msgid and its fields: runs and submissions trade
error_en/error_vi for error_msgid/error_params; older rows keep both texts under "%(en)s".

Revision ID: 0006_reason_msgid
Revises: 0005_token_expiry
Create Date: 2026-12-07 05:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_reason_msgid'
down_revision = '0005_token_expiry'
branch_labels = None
depends_on = None

TABLES = ('runs', 'submissions')
LEGACY_REASON = '%(en)s'  # app.records.LEGACY_REASON


def _table(name):
    return sa.table(name, sa.column('id', sa.String), sa.column('error_en', sa.Text), sa.column('error_vi', sa.Text),
                    sa.column('error_msgid', sa.Text), sa.column('error_params', sa.JSON))


def upgrade():
    bind = op.get_bind()
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column('error_msgid', sa.Text(), nullable=True))
            batch_op.add_column(sa.Column('error_params', sa.JSON(), nullable=True))
        table = _table(name)
        rows = bind.execute(sa.select(table.c.id, table.c.error_en, table.c.error_vi)
                            .where(sa.or_(table.c.error_en.isnot(None), table.c.error_vi.isnot(None)))).all()
        for row_id, en, vi in rows:
            bind.execute(table.update().where(table.c.id == row_id).values(
                error_msgid=LEGACY_REASON, error_params={'en': en or vi, 'vi': vi or en}))
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column('error_en')
            batch_op.drop_column('error_vi')


def downgrade():
    bind = op.get_bind()
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column('error_en', sa.Text(), nullable=True))
            batch_op.add_column(sa.Column('error_vi', sa.Text(), nullable=True))
        table = _table(name)
        rows = bind.execute(sa.select(table.c.id, table.c.error_msgid, table.c.error_params)
                            .where(table.c.error_msgid.isnot(None))).all()
        for row_id, msgid, params in rows:
            params = params or {}
            if msgid == LEGACY_REASON:
                en, vi = params.get('en'), params.get('vi')
            else:  # the English msgid filled in; the Vietnamese needs the catalogue, so English stands in
                fields = {k: v['msgid'] if isinstance(v, dict) and set(v) == {'msgid'} else v for k, v in params.items()}
                en = vi = msgid % fields if fields else msgid
            bind.execute(table.update().where(table.c.id == row_id).values(error_en=en, error_vi=vi))
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column('error_msgid')
            batch_op.drop_column('error_params')
