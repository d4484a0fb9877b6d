"""approximate indexes beside each generation's stored vectors, with their tuned parameters and
recall; source URLs and captions of imported items

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


def upgrade() -> None:
    with op.batch_alter_table('media_items') as batch:
        batch.add_column(sa.Column('url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('caption', sa.Text(), nullable=True))
    with op.batch_alter_table('index_generations') as batch:
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
                       'ann_params', 'ann_checksum', 'ann_size_bytes', 'ann_filename', 'ann_factory'):
            batch.drop_column(column)
    with op.batch_alter_table('media_items') as batch:
        batch.drop_column('caption')
        batch.drop_column('url')
