"""framedex.api."""
