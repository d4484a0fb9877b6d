"""video frames: one row per kept frame of a video, the videos' length and poster time, and the
frames of staged videos

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'video_frames',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('start_s', sa.Float(), nullable=False),
        sa.Column('end_s', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['media_items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_video_frames_item_id', 'video_frames', ['item_id'])
    with op.batch_alter_table('media_items') as batch:
        batch.add_column(sa.Column('duration_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('poster_s', sa.Float(), nullable=True))
    with op.batch_alter_table('staged_vectors') as batch:
        batch.add_column(sa.Column('duration_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('poster_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('frame_times', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('frame_vectors', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('staged_vectors') as batch:
        for column in ('frame_vectors', 'frame_times', 'poster_s', 'duration_s'):
            batch.drop_column(column)
    with op.batch_alter_table('media_items') as batch:
        batch.drop_column('poster_s')
        batch.drop_column('duration_s')
    op.drop_index('ix_video_frames_item_id', table_name='video_frames')
    op.drop_table('video_frames')
