"""photo facts: when, where and with what each item was taken (EXIF/XMP, video container tags,
GeoNames place names), read by the facts stage of the next run

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 04:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: nothing copies the table.
    op.add_column('media_items', sa.Column('taken_at', sa.DateTime(timezone=False), nullable=True))
    op.add_column('media_items', sa.Column('taken_offset_min', sa.Integer(), nullable=True))
    op.add_column('media_items', sa.Column('taken_source', sa.String(length=10), nullable=True))
    op.add_column('media_items', sa.Column('camera', sa.String(length=100), nullable=True))
    op.add_column('media_items', sa.Column('lens', sa.String(length=100), nullable=True))
    op.add_column('media_items', sa.Column('latitude', sa.Float(), nullable=True))
    op.add_column('media_items', sa.Column('longitude', sa.Float(), nullable=True))
    op.add_column('media_items', sa.Column('place', sa.Text(), nullable=True))
    op.add_column('media_items', sa.Column('facts_version', sa.Integer(), nullable=True))
    op.add_column('media_items', sa.Column('facts_mtime_ns', sa.BigInteger(), nullable=True))
    op.create_index('ix_media_items_taken_at', 'media_items', ['taken_at'])


def downgrade() -> None:
    # Native DROP COLUMN (SQLite 3.35+), not a batch copy: recreating media_items would drop the
    # old table, and with foreign keys on that deletes every row of item_texts, video_frames and
    # item_labels through their ON DELETE CASCADE (SQLite then refuses, the FTS5 tables locked).
    op.drop_index('ix_media_items_taken_at', table_name='media_items')
    for column in ('facts_mtime_ns', 'facts_version', 'place', 'longitude', 'latitude', 'lens', 'camera',
                   'taken_source', 'taken_offset_min', 'taken_at'):
        op.drop_column('media_items', column)
