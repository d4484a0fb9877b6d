"""item texts: the words an item holds or carries (name, captions, text read from it, speech,
subtitles) and the keyword index over them; what each text source last read; the shot of each
video frame

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 22:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# SQLite: FTS5 over item_texts.terms (an external-content table kept in step by triggers), and a
# trigram table over the names alone, so part of a file name (IMG_204) is found by substring.
_SQLITE = [
    "CREATE VIRTUAL TABLE item_texts_fts USING fts5(terms, content='item_texts', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE VIRTUAL TABLE item_names_trigram USING fts5(terms, content='item_texts', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER item_texts_fts_insert AFTER INSERT ON item_texts BEGIN "
    "INSERT INTO item_texts_fts(rowid, terms) VALUES (new.id, new.terms); "
    "INSERT INTO item_names_trigram(rowid, terms) SELECT new.id, new.terms WHERE new.field = 'name'; END",
    "CREATE TRIGGER item_texts_fts_delete AFTER DELETE ON item_texts BEGIN "
    "INSERT INTO item_texts_fts(item_texts_fts, rowid, terms) VALUES ('delete', old.id, old.terms); "
    "INSERT INTO item_names_trigram(item_names_trigram, rowid, terms) SELECT 'delete', old.id, old.terms "
    "WHERE old.field = 'name'; END",
]
# PostgreSQL: full text over the same terms with the 'simple' configuration (the terms are already
# folded and cut, so no stemming or stop words), and pg_trgm for substrings of names.
_POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_item_texts_fts ON item_texts USING gin (to_tsvector('simple', terms))",
    "CREATE INDEX ix_item_texts_trgm ON item_texts USING gin (terms gin_trgm_ops) WHERE field = 'name'",
]


def upgrade() -> None:
    op.create_table(
        'item_texts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('field', sa.String(length=16), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('terms', sa.Text(), nullable=False),
        sa.Column('start_s', sa.Float(), nullable=True),
        sa.Column('end_s', sa.Float(), nullable=True),
        sa.Column('confidence', sa.Float(), nullable=True),
        sa.Column('box', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['item_id'], ['media_items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_item_texts_item_id', 'item_texts', ['item_id'])
    op.create_table(
        'text_extractions',
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('extractor', sa.String(length=256), nullable=False),
        sa.Column('signature', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('extracted_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['media_items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id', 'source'),
    )
    for statement in _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL:
        op.execute(statement)
    # A video's frames know their shot, so a moment stays inside it.
    with op.batch_alter_table('video_frames') as batch:
        batch.add_column(sa.Column('shot', sa.Integer(), nullable=True))
    with op.batch_alter_table('staged_vectors') as batch:
        batch.add_column(sa.Column('frame_shots', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staged_vectors') as batch:
        batch.drop_column('frame_shots')
    with op.batch_alter_table('video_frames') as batch:
        batch.drop_column('shot')
    if op.get_bind().dialect.name == "sqlite":
        for name in ("item_texts_fts_insert", "item_texts_fts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS item_texts_fts")
        op.execute("DROP TABLE IF EXISTS item_names_trigram")
    op.drop_table('text_extractions')
    op.drop_index('ix_item_texts_item_id', table_name='item_texts')
    op.drop_table('item_texts')
