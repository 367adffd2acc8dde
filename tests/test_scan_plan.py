from __future__ import annotations

import pytest

from flakefinder.errors import StageLimitError
from flakefinder.hardware.protocols import StageLimits
from flakefinder.scan.plan import TilePlan, plan_raster


def test_raster_count_serpentine_and_spacing():
    # 1000 x 500 µm chip, 200 x 100 µm fov, 10 % overlap: step 180 x 90
    tiles = plan_raster([(0, 0), (1000, 0), (1000, 500), (0, 500)], 200, 100, overlap=0.1)
    # columns: ceil((1000-200)/180)+1 = 6, rows: ceil((500-100)/90)+1 = 6
    assert len(tiles) == 36
    assert [t.index for t in tiles] == list(range(36))
    assert [t.col for t in tiles[:6]] == [0, 1, 2, 3, 4, 5]
    assert [t.col for t in tiles[6:12]] == [5, 4, 3, 2, 1, 0]
    assert all(t.row == i // 6 for i, t in enumerate(tiles))
    xs = sorted({t.x_um for t in tiles})
    ys = sorted({t.y_um for t in tiles})
    assert [b - a for a, b in zip(xs[:-1], xs[1:], strict=True)] == pytest.approx([180.0] * 5)
    assert [b - a for a, b in zip(ys[:-1], ys[1:], strict=True)] == pytest.approx([90.0] * 5)
    # grid centred on the chip and covering it
    assert (xs[0] + xs[-1]) / 2 == pytest.approx(500.0)
    assert xs[0] - 100 <= 0 and xs[-1] + 100 >= 1000
    assert ys[0] - 50 <= 0 and ys[-1] + 50 >= 500
    # consecutive tiles are neighbours (serpentine: no long jumps)
    for a, b in zip(tiles[:-1], tiles[1:], strict=True):
        assert abs(a.row - b.row) + abs(a.col - b.col) == 1


def test_exact_fit_and_single_tile():
    tiles = plan_raster([(0, 0), (380, 100)], 200, 100, overlap=0.1)
    assert [(t.x_um, t.y_um) for t in tiles] == [(100.0, 50.0), (280.0, 50.0)]
    one = plan_raster([(10, 10), (20, 20)], 200, 100)
    assert one == [TilePlan(0, 0, 0, 15.0, 15.0)]


def test_corners_any_order_bounding_rectangle():
    a = plan_raster([(0, 0), (500, 20), (480, 300), (-10, 290)], 100, 100, overlap=0.0)
    b = plan_raster([(-10, 0), (500, 300)], 100, 100, overlap=0.0)
    assert a == b


def test_limits_error_one_clear_message():
    limits = StageLimits(0, 800, 0, 800)
    assert plan_raster([(0, 0), (800, 800)], 200, 200, limits=limits)
    with pytest.raises(StageLimitError) as err:
        plan_raster([(500, 500), (1500, 900)], 200, 200, limits=limits)
    msg = str(err.value)
    assert "outside the stage limits" in msg and "x 0..800" in msg and "tile centres" in msg


@pytest.mark.parametrize(
    "args",
    [([(0, 0)], 10, 10, 0.1), ([(0, 0), (1, 1)], 0, 10, 0.1), ([(0, 0), (1, 1)], 10, 10, 1.0)],
)
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        plan_raster(*args)
