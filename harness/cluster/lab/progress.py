"""Progress for the lab's long steps (box build, vagrant up, restore): a rich spinner on stderr."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


@contextmanager
def step(title: str) -> Iterator[Callable[[str], None]]:
    """Show `title` with a spinner while the block runs; the yielded callable shows a command's latest line."""
    start = time.monotonic()
    with Console(stderr=True).status(escape(title)) as status:

        def on_line(line: str) -> None:
            line = line.strip()
            if line:
                status.update(f"{escape(title)} [dim]({time.monotonic() - start:.0f} s) {escape(line[-100:])}[/]")

        yield on_line
