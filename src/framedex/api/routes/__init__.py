"""framedex.api.routes."""
