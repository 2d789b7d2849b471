"""``python -m framedex`` runs the CLI."""

from framedex.cli import main

main()
