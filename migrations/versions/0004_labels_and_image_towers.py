"""zero-shot item labels, catalog state, and image-tower checksums of models

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('embedding_models') as batch:
        batch.add_column(sa.Column('image_tower', sa.String(length=64), nullable=True))
    op.create_table('item_labels',
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['media_items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'rank')
    )
    op.create_index('ix_item_labels_label_rank', 'item_labels', ['label', 'rank'], unique=False)
    op.create_table('catalog_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('catalog_state')
    op.drop_index('ix_item_labels_label_rank', table_name='item_labels')
    op.drop_table('item_labels')
    with op.batch_alter_table('embedding_models') as batch:
        batch.drop_column('image_tower')
