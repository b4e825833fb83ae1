"""The target that crafted files in tests/test_sharing.py name: were it ever built, it would leave a
marker file, so a test that finds no marker knows that nothing a file named was run."""

from pathlib import Path


def touch(path: str, **anything) -> None:
    Path(path).write_text("built from a file\n")
