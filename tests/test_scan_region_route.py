"""Search regions (plan inside, exclusions), revisit routes and flake filters."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import StageLimits
from flakefinder.scan.region import Exclusion, RegionError, SearchRegion, covered, plan_region
from flakefinder.scan.route import nearest_neighbour, path_length, plan_route
from flakefinder.scan.selection import FilterError, parse_filter


def test_region_plan_stays_inside_and_overlaps() -> None:
    region = SearchRegion((0.0, 0.0, 1000.0, 500.0))
    tiles = plan_region(region, 300.0, 300.0, 0.1)
    xs = sorted({t.x_um for t in tiles})
    ys = sorted({t.y_um for t in tiles})
    assert xs[0] == 150.0 and xs[-1] == 850.0 and len(xs) == 4  # fields of view inside [0, 1000]
    assert ys == [150.0, 350.0]
    assert max(b - a for a, b in itertools.pairwise(xs)) <= 270.0  # at least 10 % overlap
    assert [t.index for t in tiles] == list(range(8))
    assert [t.col for t in tiles[:4]] == [0, 1, 2, 3] and [t.col for t in tiles[4:]] == [3, 2, 1, 0]
    narrow = plan_region(SearchRegion((0.0, 0.0, 100.0, 100.0)), 300.0, 300.0)
    assert [(t.x_um, t.y_um) for t in narrow] == [(50.0, 50.0)]  # one tile on a small region


def test_exclusions_drop_only_fully_covered_tiles() -> None:
    full = plan_region(SearchRegion((0.0, 0.0, 1000.0, 500.0)), 300.0, 300.0)
    t0 = full[0]  # field of view 0..300 x 0..300
    halves = (Exclusion("residue", (0, 0, 150, 300)), Exclusion("empty", (150, 0, 300, 300)))
    region = SearchRegion((0.0, 0.0, 1000.0, 500.0), halves)
    tiles = plan_region(region, 300.0, 300.0)
    assert len(tiles) == len(full) - 1 and (t0.x_um, t0.y_um) not in [(t.x_um, t.y_um) for t in tiles]
    gap = SearchRegion((0.0, 0.0, 1000.0, 500.0), (Exclusion("user", (0, 0, 149, 300)), halves[1]))
    assert len(plan_region(gap, 300.0, 300.0)) == len(full)  # a 1 µm strip is still searched
    assert covered((0, 0, 10, 10), [(0, 0, 10, 5), (0, 5, 10, 10)])
    assert not covered((0, 0, 10, 10), [(0, 0, 10, 5), (0, 5.5, 10, 10)])
    assert not covered((0, 0, 10, 10), np.zeros((0, 4)))


def test_region_validation_and_limits() -> None:
    good = SearchRegion((0.0, 0.0, 10.0, 10.0), (Exclusion("user", (1, 1, 2, 2)),))
    assert SearchRegion.from_dict(good.to_dict()) == good
    for data, message in (
        ({"rect_um": [10, 0, 0, 10]}, "x_min < x_max"),
        ({"rect_um": [0, 0, 10]}, r"rect_um must be \[x_min"),
        ({"rect_um": [0, 0, float("nan"), 10]}, "finite numbers"),
        ({"rect_um": [0, 0, 10, 10], "exclusions": [{"kind": "dirt", "rect_um": [0, 0, 1, 1]}]}, "kind 'dirt'"),
        ({"rect_um": [0, 0, 10, 10], "exclusions": "all"}, "must be a list"),
        ({"rect_um": [0, 0, "a", 10]}, "4 numbers"),
    ):
        with pytest.raises(RegionError, match=message):
            SearchRegion.from_dict(data)
    with pytest.raises(StageLimitError, match="outside the stage limits"):
        plan_region(SearchRegion((0.0, 0.0, 1000.0, 1000.0)), 300, 300, limits=StageLimits(0, 500, 0, 500))


def test_route_is_a_short_permutation() -> None:
    rng = np.random.default_rng(3)
    pts = [tuple(p) for p in rng.uniform(0, 5000, (60, 2))]
    route = plan_route((0.0, 0.0), pts)
    assert sorted(route.order) == list(range(60))
    assert route.length_um == pytest.approx(path_length((0.0, 0.0), pts, route.order))
    assert route.naive_length_um == pytest.approx(path_length((0.0, 0.0), pts, range(60)))
    nn = path_length((0.0, 0.0), pts, nearest_neighbour((0.0, 0.0), pts))
    assert route.length_um <= nn and route.length_um < 0.3 * route.naive_length_um
    line = [(float(x), 0.0) for x in (7, 2, 9, 4, 1, 8, 3, 6, 5)]
    assert plan_route((0.0, 0.0), line).length_um == pytest.approx(9.0)  # the optimum
    assert plan_route((0.0, 0.0), []).length_um == 0.0


def _cross(a, b, c, d) -> bool:
    """Whether segments ab and cd properly cross."""

    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def test_two_opt_leaves_no_crossing() -> None:
    # a 2-opt local optimum never crosses itself: uncrossing two edges always shortens it
    rng = np.random.default_rng(8)
    for _ in range(5):
        pts = [tuple(p) for p in rng.uniform(0, 1000, (25, 2))]
        route = plan_route((0.0, 0.0), pts)
        path = [(0.0, 0.0), *(pts[i] for i in route.order)]
        edges = list(itertools.pairwise(path))
        for i, j in itertools.combinations(range(len(edges)), 2):
            if j > i + 1:
                assert not _cross(*edges[i], *edges[j]), (i, j)
        assert route.length_um <= path_length((0.0, 0.0), pts, nearest_neighbour((0.0, 0.0), pts))


@dataclass
class F:
    material: str = "graphene"
    layer_count: int | None = 2
    area_um2: float = 150.0
    confidence: float = 0.9
    layer_class: str = "few"
    status: str = "new"


def test_filter_parses_and_selects() -> None:
    flt = parse_filter("layers<=3,area_um2>=100")
    assert str(flt) == "layers<=3,area_um2>=100"
    assert flt.matches(F()) and not flt.matches(F(layer_count=4)) and not flt.matches(F(area_um2=99))
    assert not flt.matches(F(layer_count=None))  # no layer count: never matches a layers clause
    assert parse_filter(" material = hBN , class!=thick ").matches(F(material="hbn"))
    assert parse_filter("").matches(F()) and parse_filter("confidence>0.5").matches(F())
    assert parse_filter("layers==2").matches(F()) and not parse_filter("layers<2").matches(F())
    for text, message in (
        ("layers<=three", "'three' is not a number"),
        ("thickness<3", "unknown filter field 'thickness'"),
        ("layers 3", "use FIELD OP VALUE"),
        ("material<graphene", "takes = or != only"),
        ("area_um2>=inf", "must be finite"),
    ):
        with pytest.raises(FilterError, match=message):
            parse_filter(text)
    assert math.isfinite(parse_filter("area_um2>=1e3").clauses[0].value)  # type: ignore[arg-type]
