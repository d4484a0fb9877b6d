"""Text sources: what each item says in words (its name, captions, sidecars, text read from it), kept in item_texts."""
