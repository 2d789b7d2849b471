"""framedex.indexer."""
