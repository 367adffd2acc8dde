"""Typer command-line interface (thin: heavy imports happen inside commands)."""

from __future__ import annotations

from collections.abc import Iterable


def parse_materials(text: str | Iterable[str], *, option: str = "--materials") -> tuple[str, ...]:
    """Comma-separated (or repeated) material names, spelled as the optics model spells them.

    ``"hbn, Graphene"`` gives ``("hBN", "graphene")``, so what is stored, matched against a
    model's classes and shown in the UI uses one spelling. An unknown name raises
    :class:`~flakefinder.errors.UnknownMaterialError` listing the known ones; an empty list is a
    usage error.
    """
    import typer

    from flakefinder.optics import get_material

    items = [text] if isinstance(text, str) else list(text)
    names = [m.strip() for item in items for m in item.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("give at least one material", param_hint=option)
    return tuple(dict.fromkeys(get_material(m).name for m in names))
