"""framedex.query."""
