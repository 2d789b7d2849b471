"""Routers of the ``/v1.3`` surface, one per Twelve Labs resource."""
