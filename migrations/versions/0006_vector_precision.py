"""the precisions a generation's vectors were embedded in, and the lowest cosine against fp32
that the fidelity check measured for them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('index_generations') as batch:
        batch.add_column(sa.Column('precisions', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('precision_cosine', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('index_generations') as batch:
        batch.drop_column('precision_cosine')
        batch.drop_column('precisions')
