"""staged outcomes: a staged row may record a file that needed no new vector, or was skipped, so
a partition of a distributed run is staged whole

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staged_vectors') as batch:
        batch.add_column(sa.Column('skip_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staged_vectors') as batch:
        batch.drop_column('skip_reason')
