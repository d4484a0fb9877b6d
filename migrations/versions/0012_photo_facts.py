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
    with op.batch_alter_table('media_items') as batch:
        batch.add_column(sa.Column('taken_at', sa.DateTime(timezone=False), nullable=True))
        batch.add_column(sa.Column('taken_offset_min', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('taken_source', sa.String(length=10), nullable=True))
        batch.add_column(sa.Column('camera', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('lens', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('latitude', sa.Float(), nullable=True))
        batch.add_column(sa.Column('longitude', sa.Float(), nullable=True))
        batch.add_column(sa.Column('place', sa.Text(), nullable=True))
        batch.add_column(sa.Column('facts_version', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('facts_mtime_ns', sa.BigInteger(), nullable=True))
        batch.create_index('ix_media_items_taken_at', ['taken_at'])


def downgrade() -> None:
    with op.batch_alter_table('media_items') as batch:
        batch.drop_index('ix_media_items_taken_at')
        for column in ('facts_mtime_ns', 'facts_version', 'place', 'longitude', 'latitude', 'lens', 'camera',
                       'taken_source', 'taken_offset_min', 'taken_at'):
            batch.drop_column(column)
