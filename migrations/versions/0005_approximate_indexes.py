"""approximate indexes beside each generation's stored vectors, with their tuned parameters and
recall; segment files (generations share their base file); source URLs and captions of imported items

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


# The unique constraint on index_generations.filename was created without a name: on SQLite,
# batch mode finds it by this convention; on PostgreSQL it has the server's default name.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.drop_constraint('index_generations_filename_key', 'index_generations', type_='unique')
    else:
        with op.batch_alter_table('index_generations', naming_convention=NAMING) as batch:
            batch.drop_constraint('uq_index_generations_filename', type_='unique')
    with op.batch_alter_table('media_items') as batch:
        batch.add_column(sa.Column('url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('caption', sa.Text(), nullable=True))
    with op.batch_alter_table('index_generations') as batch:
        batch.add_column(sa.Column('segments', sa.Text(), nullable=True))
        batch.add_column(sa.Column('ann_factory', sa.String(length=256), nullable=True))
        batch.add_column(sa.Column('ann_filename', sa.String(length=256), nullable=True))
        batch.add_column(sa.Column('ann_size_bytes', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('ann_checksum', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('ann_params', sa.Text(), nullable=True))
        batch.add_column(sa.Column('ann_recall', sa.Float(), nullable=True))
        batch.add_column(sa.Column('ann_query_ms', sa.Float(), nullable=True))
        batch.add_column(sa.Column('exact_query_ms', sa.Float(), nullable=True))
        batch.add_column(sa.Column('ann_built_vectors', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('ann_stale', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('index_generations') as batch:
        for column in ('ann_stale', 'ann_built_vectors', 'exact_query_ms', 'ann_query_ms', 'ann_recall',
                       'ann_params', 'ann_checksum', 'ann_size_bytes', 'ann_filename', 'ann_factory', 'segments'):
            batch.drop_column(column)
        batch.create_unique_constraint('uq_index_generations_filename', ['filename'])
    with op.batch_alter_table('media_items') as batch:
        batch.drop_column('caption')
        batch.drop_column('url')
