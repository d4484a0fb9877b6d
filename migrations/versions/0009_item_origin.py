"""item origin: whether an item's vector came from `spyglass index` or `spyglass import`, so an
import never replaces an indexed item; skips remembered for want of memory are forgotten

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('media_items') as batch:
        batch.add_column(sa.Column('origin', sa.String(length=8), server_default='index', nullable=False))
    # Rows an import wrote carry its url or caption; the indexer writes neither.
    op.execute("UPDATE media_items SET origin = 'import' WHERE url IS NOT NULL OR caption IS NOT NULL")
    # A decode that ran out of memory was remembered as a lasting skip; it says nothing of the file.
    op.execute("DELETE FROM skipped_files WHERE reason = 'image is too large to decode in the memory available'")


def downgrade() -> None:
    with op.batch_alter_table('media_items') as batch:
        batch.drop_column('origin')
