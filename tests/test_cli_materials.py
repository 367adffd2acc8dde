"""Material names on the command line are spelled once, as the optics model spells them."""

from __future__ import annotations

import pytest
import typer

from flakefinder.cli import parse_materials
from flakefinder.errors import UnknownMaterialError


def test_aliases_and_case_become_canonical_names() -> None:
    assert parse_materials("hbn, Graphene,h-BN") == ("hBN", "graphene")
    assert parse_materials(["mos2", "WTe2,wse2"]) == ("MoS2", "WTe2", "WSe2")


def test_unknown_and_empty() -> None:
    with pytest.raises(UnknownMaterialError, match="unknown material 'unobtainium'"):
        parse_materials("graphene,unobtainium")
    with pytest.raises(typer.BadParameter, match="at least one material"):
        parse_materials(" , ")
