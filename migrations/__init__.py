"""Alembic migrations of the Spyglass catalog."""
