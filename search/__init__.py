"""Spyglass's query side and the core it reads: settings, encoder, vector index, catalog."""
