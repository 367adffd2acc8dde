"""Small text helpers for messages shown to people (no dependencies)."""

from __future__ import annotations


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``, ``"0 images"``; ``plural_form`` for irregular nouns.

    Parameters
    ----------
    n
        The count.
    singular
        The noun for one.
    plural_form
        The noun for any other count (default: ``singular + "s"``).
    """
    word = singular if n == 1 else (plural_form or f"{singular}s")
    return f"{n} {word}"
