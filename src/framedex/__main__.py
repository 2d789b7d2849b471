"""``python -m framedex``: the same as the ``framedex`` command."""

from framedex.cli import main

main()
