"""path columns compare byte by byte on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 19:30:00

"Inside this folder" is a range on the path column (search/paths.py). SQLite's default BINARY
collation already compares bytes; PostgreSQL's database collation (en_US.UTF-8, say) does not,
so the path columns move to the "C" collation there. Their unique indexes are rebuilt with them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

PATH_COLUMNS = (("media_roots", "path"), ("media_items", "path"), ("skipped_files", "path"),
                ("staged_vectors", "path"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in PATH_COLUMNS:
        op.alter_column(table, column, type_=sa.Text(collation="C"), existing_type=sa.Text(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in PATH_COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.Text(collation="C"),
                        existing_nullable=False)
