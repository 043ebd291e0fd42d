"""Progress on every long step (box build, vagrant up, restore, playbook runs), wherever the harness
runs: a spinner on an interactive terminal, plain throttled lines in CI logs and under pytest.

The entry point decides where progress goes (`use()`): the CLI leaves the default (stderr), the
pytest plugin installs a console that writes past pytest's output capture. Library code only calls
`console()` and `step()`; it never builds its own Console.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

# Without a spinner, repeat a step's latest line at most this often (CI logs stay readable).
LINE_EVERY_SECONDS = 20.0

_console: Console | None = None


def use(console: Console | None) -> None:
    """Send progress to `console` (None: back to the default, stderr)."""
    global _console
    _console = console


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


@contextmanager
def step(title: str) -> Iterator[Callable[[str], None]]:
    """Show `title` while the block runs; the yielded callable shows the step's latest line.

    Interactive: one live spinner line. Otherwise: a start line, the latest line at most every
    LINE_EVERY_SECONDS, and an end line with the time taken, so a CI log shows where a run is."""
    c = console()
    start = time.monotonic()
    if c.is_interactive:
        with c.status(escape(title)) as status:

            def on_line(line: str) -> None:
                line = line.strip()
                if line:
                    status.update(f"{escape(title)} [dim]({time.monotonic() - start:.0f} s) {escape(line[-100:])}[/]")

            yield on_line
        c.print(f"[green]✓[/] {escape(title)} [dim]({time.monotonic() - start:.0f} s)[/]", highlight=False)
        return

    c.print(f"… {escape(title)}", highlight=False)
    last = [start]

    def on_plain_line(line: str) -> None:
        line = line.strip()
        now = time.monotonic()
        if line and now - last[0] >= LINE_EVERY_SECONDS:
            last[0] = now
            c.print(f"  {escape(title)} [dim]({now - start:.0f} s)[/] {escape(line[-160:])}", highlight=False)

    try:
        yield on_plain_line
    except BaseException:
        c.print(f"[red]✗[/] {escape(title)} [dim](failed after {time.monotonic() - start:.0f} s)[/]", highlight=False)
        raise
    c.print(f"[green]✓[/] {escape(title)} [dim]({time.monotonic() - start:.0f} s)[/]", highlight=False)
