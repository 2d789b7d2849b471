"""Running ``framedex`` commands in this process, as a terminal user meets them.

Typer's runner invokes the same app as the console script, without a process start per
command; the terminal is wide, so tables keep whole cells (at 80 columns rich folds long file
names).
"""

from __future__ import annotations


class Run:
    """What a command gave: exit code, stdout, stderr (as a terminal user sees them)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args: str) -> Run:
    """``framedex ARGS`` in this process."""
    from typer.testing import CliRunner

    from framedex.cli import app

    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return Run(res.exit_code, res.stdout, res.stderr)


def one_line(run: Run, *needles: str) -> str:
    """The one ``framedex: error:`` line of a failed command (exit 1), holding ``needles``."""
    assert run.returncode == 1, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framedex: error:"), run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def ok(run: Run) -> Run:
    """``run``, asserted to have exited 0."""
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run
