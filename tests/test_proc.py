"""The subprocess choke point."""

from __future__ import annotations

import os
import sys

from harness import proc


def test_children_never_share_our_stdin() -> None:
    """A child that makes its stdin non-blocking (ruby and ssh do) would make ours non-blocking too,
    since the flag lives on the shared file description; every Ansible started after that refuses
    to run ("Ansible requires blocking IO"). Seen in CI on a cold machine."""
    assert proc.run(["sh", "-c", "readlink /proc/self/fd/0"]).stdout.strip() == "/dev/null"
    before = os.get_blocking(0)
    try:
        proc.run([sys.executable, "-c", "import os; os.set_blocking(0, False)"])
        assert os.get_blocking(0) == before
    finally:
        os.set_blocking(0, before)


def test_input_still_reaches_the_child() -> None:
    assert proc.run(["cat"], input="hello").stdout == "hello"
