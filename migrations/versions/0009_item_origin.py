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
    _captions_as_text()
    # A decode that ran out of memory was remembered as a lasting skip; it says nothing of the file.
    op.execute("DELETE FROM skipped_files WHERE reason = 'image is too large to decode in the memory available'")


def _captions_as_text() -> None:
    """SQLite kept the bytes an older import was given for a caption (a CSV not in UTF-8), and
    every answer naming that item failed: decode them by the import's rule (UTF-8, else
    Windows-1252). PostgreSQL refused such rows, so it holds none."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    rows = bind.execute(sa.text("SELECT id, caption FROM media_items WHERE typeof(caption) = 'blob'")).all()
    for item_id, raw in rows:
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(raw).decode("cp1252", errors="replace")
        bind.execute(sa.text("UPDATE media_items SET caption = :caption WHERE id = :id"),
                     {"caption": text.replace("\x00", "\ufffd")[:4096], "id": item_id})


def downgrade() -> None:
    with op.batch_alter_table('media_items') as batch:
        batch.drop_column('origin')
