"""Wording every report shares: a count with its noun in the right number ("1 check", "2 checks").

A leaf module: it imports nothing of the harness, so every stage may use it."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` and `noun`, the noun plural unless the count is one; `many` for a plural not made with
    -s (`plural(2, "entry", "entries")`)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
