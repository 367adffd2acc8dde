"""Objectives as setup: files, validation, switching (focus offsets), the simulated turret."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _scanfakes import RectChip, render_rects
from flakefinder.hardware.objectives import (
    DEFAULT_OBJECTIVES,
    Objective,
    ObjectiveError,
    find_objective,
    load_objectives,
    merge_objectives,
    switch_objective,
)
from flakefinder.hardware.protocols import ObjectiveTurret
from flakefinder.hardware.sim import HOLDER_RGB, simulated_microscope

CHIP = RectChip(200.0, 100.0, flakes=((40.0, 40.0, 60.0, 50.0),))
OBJS = (
    Objective("5x", 2.0, 0.14),
    Objective("20x", 0.5, 0.42, focus_offset_um=1.0),
    Objective("100x", None, 0.7),
)


def scope(**kw):
    kw.setdefault("objectives", OBJS)
    kw.setdefault("objective", "20x")
    return simulated_microscope(CHIP, renderer=render_rects, shape_px=(40, 40), **kw)


def test_objective_has_pixel_size_fov_and_clear_errors() -> None:
    obj = Objective("20x", 0.5, 0.42)
    assert obj.fov_um((1024, 2048)) == (1024.0, 512.0)
    with pytest.raises(ObjectiveError, match=r"'100x' has no pixel size: define a Micro-Manager"):
        OBJS[2].pixel_size()
    for bad in ({"um_per_px": 0.0}, {"um_per_px": float("nan")}, {"numerical_aperture": 2.0},
                {"focus_offset_um": 1e9}):  # fmt: skip
        with pytest.raises(ObjectiveError):
            Objective("x", **{"um_per_px": 0.5, **bad})
    with pytest.raises(ObjectiveError, match="unknown objective '10x'; this microscope has: 5x, 20x, 100x"):
        find_objective(OBJS, "10x")
    assert find_objective(OBJS, "20X").name == "20x"


def test_objectives_file_toml_and_json(tmp_path: Path) -> None:
    (tmp_path / "o.toml").write_text(
        '[objectives.50x]\num_per_px = 0.21\nnumerical_aperture = 0.55\nfocus_offset_um = -2.5\n'
        'setup = "profiles/s50.json"\n[objectives.100x]\nnumerical_aperture = 0.7\n'
    )
    o50, o100 = load_objectives(tmp_path / "o.toml")
    assert (o50.name, o50.um_per_px, o50.focus_offset_um, o50.magnification) == ("50x", 0.21, -2.5, 50.0)
    assert o50.setup_profile == str((tmp_path / "profiles" / "s50.json").resolve())
    assert o100.um_per_px is None and o100.numerical_aperture == 0.7
    (tmp_path / "o.json").write_text('{"objectives": {"5x": {"um_per_px": 2}}}')
    assert load_objectives(tmp_path / "o.json")[0].um_per_px == 2.0
    for text, message in (
        ("[objectives.5x]\npixel = 2\n", "unknown setting"),
        ('[objectives.5x]\num_per_px = "two"\n', "must be a number"),
        ("[objectives.5x]\num_per_px = -1\n", "um_per_px must lie in"),
        ("x = 1\n", r"\[objectives.NAME\]"),
        ("[[[", "cannot read objectives file"),
    ):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ObjectiveError, match=message):
            load_objectives(tmp_path / "bad.toml")
    with pytest.raises(ObjectiveError, match="not found"):
        load_objectives(tmp_path / "nope.toml")


def test_objectives_files_are_read_within_bounds(tmp_path: Path) -> None:
    """JSON through the bounded strict loader, TOML size-checked: one ObjectiveError each."""
    for name, data, message in (
        ("nan.json", '{"objectives": {"5x": {"um_per_px": NaN}}}', "NaN"),
        ("deep.json", "[" * 5000 + "]" * 5000, "nested 5000 levels deep"),
        ("long.json", '{"objectives": {"5x": {"um_per_px": 1' + "0" * 200 + "}}}", "number"),
        ("big.json", " " * (2**20 + 1) + "{}", "larger than"),
        ("big.toml", "#" * (2**20 + 1), "larger than"),
        ("deep.toml", "x = " + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("latin1.toml", b"[objectives.5x]\n# \xe9\n", "not UTF-8"),
    ):
        p = tmp_path / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
        with pytest.raises(ObjectiveError, match=message):
            load_objectives(p)


def test_merge_keeps_micro_manager_pixel_sizes() -> None:
    base = (Objective("20x", 0.5), Objective("50x", None))
    extra = (Objective("20x", 0.9, 0.42, focus_offset_um=3.0), Objective("50x", 0.2, 0.55))
    a, b = merge_objectives(base, extra)
    assert (a.um_per_px, a.numerical_aperture, a.focus_offset_um) == (0.5, 0.42, 3.0)
    assert b.um_per_px == 0.2  # Micro-Manager has none: the file's


def test_turret_renders_the_same_chip_at_each_magnification() -> None:
    m = scope()
    assert isinstance(m.turret, ObjectiveTurret)
    assert (m.objective, m.camera.um_per_px) == ("20x", 0.5)
    m.stage.move_xy_um(50.0, 45.0)
    dark = lambda img: int((img[:, :, 0] < 160).sum())  # noqa: E731
    at20 = dark(m.camera.snap())
    switch_objective(m, "5x")
    assert (m.objective, m.camera.um_per_px) == ("5x", 2.0)
    at5 = dark(m.camera.snap())
    assert at5 == (20 // 2) * (10 // 2)  # the 20 x 10 µm flake: 10 x 5 pixels of 2 µm
    assert at20 == 16 * at5 == 800  # 40 x 20 pixels of 0.5 µm (the view clips none of it)


def test_switching_applies_focus_offsets_and_refuses_before_moving() -> None:
    m = scope(parfocal_error_um={"20x": 0.4})
    z20 = m.focus.get_z_um()
    assert z20 == pytest.approx(1.4)  # started in true focus: stated offset 1.0 + error 0.4
    switch_objective(m, "5x")
    assert m.focus.get_z_um() == pytest.approx(z20 - 1.0)  # stated offsets: -1.0 µm
    assert m.camera.focal_plane_z_um(0, 0) == pytest.approx(0.0)
    with pytest.raises(ObjectiveError, match="no pixel size"):
        switch_objective(m, "100x")
    assert m.objective == "5x" and m.camera.um_per_px == 2.0  # nothing changed
    with pytest.raises(ObjectiveError, match="unknown objective"):
        switch_objective(m, "63x")
    plain = simulated_microscope(CHIP, renderer=render_rects, shape_px=(40, 40))
    assert switch_objective(plain, "sim").um_per_px == 0.2
    with pytest.raises(ObjectiveError, match="no objective turret"):
        switch_objective(plain, "50x")


def test_chip_edge_shows_the_holder() -> None:
    m = scope(chip_edge=True, objective="5x")
    m.stage.move_xy_um(0.0, 50.0)  # half the field beyond the chip's left edge
    img = m.camera.snap()
    assert np.abs(img[:, :18].astype(int) - np.array(HOLDER_RGB)).max() < 10
    assert img[:, 22:, 0].min() >= 120  # chip: substrate and the flake, no holder
    assert simulated_microscope(CHIP, renderer=render_rects, shape_px=(40, 40)).camera.snap().min() > 100


def test_default_objectives_cover_the_lab_set() -> None:
    assert [o.name for o in DEFAULT_OBJECTIVES] == ["5x", "20x", "50x", "100x"]
    assert [o.fov_um((1024, 1024))[0] for o in DEFAULT_OBJECTIVES] == [2048.0, 512.0, 204.8, 102.4]
