"""The `spyglass` command: wires the indexer, the query engine and (later) the web app."""
