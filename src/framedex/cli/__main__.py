"""``python -m framedex.cli`` runs the CLI."""

from framedex.cli import main

main()
