"""The words in the media: one rule for index terms, the keyword index, snippets, and fusion with visual search."""
