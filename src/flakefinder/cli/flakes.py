"""``flakefinder flakes list|export|set-status|locate``: search, export, mark and find flakes."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flakefinder.cli.options import DbOpt, deprecated_alias

if TYPE_CHECKING:
    from flakefinder.db import Database, FlakeQuery, StoredFlake



class ListFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


MaterialsFilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--materials",
        "-m",
        help="Keep only these materials (comma-separate or repeat: graphene,hBN).",
    ),
]
OldMaterialOpt = Annotated[
    list[str] | None, typer.Option("--material", hidden=True, help="Old name of --materials.")
]
LayerClassOpt = Annotated[
    list[str] | None,
    typer.Option("--layer-class", "-l", help="Keep only mono, few and/or thick (repeatable)."),
]
MinAreaOpt = Annotated[float | None, typer.Option("--min-area", help="Minimum area in µm².")]
MaxAreaOpt = Annotated[float | None, typer.Option("--max-area", help="Maximum area in µm².")]
MinLayersOpt = Annotated[int | None, typer.Option("--min-layers", help="Minimum layer count.")]
MaxLayersOpt = Annotated[int | None, typer.Option("--max-layers", help="Maximum layer count.")]
MinConfOpt = Annotated[
    float | None, typer.Option("--min-confidence", help="Minimum detector confidence, 0..1.")
]
ChipOpt = Annotated[
    str | None, typer.Option("--chip", help="Only flakes of this chip (id or name).")
]
ScanOpt = Annotated[int | None, typer.Option("--scan", help="Only flakes of this scan id.")]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", help="Only flakes with this status: new, candidate, used, rejected."),
]
OrderOpt = Annotated[
    str,
    typer.Option(
        "--order-by",
        help="Sort by id, area_um2, confidence, layer_count, material, created_at, chip_id or"
        " scan_id; prefix '-' for descending (e.g. -area_um2).",
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Return at most this many flakes.")]
OffsetOpt = Annotated[int, typer.Option("--offset", help="Skip this many flakes first.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write to this file instead of standard output.")
]


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def open_db(url: str | None, *, must_exist: bool = True, read_only: bool = False) -> Database:
    """``Database`` for ``--db`` (or the environment / default URL).

    A SQLite file that does not exist is refused unless ``must_exist`` is False (a mistyped
    path would otherwise create an empty database). ``read_only``: for commands that only read
    (list, export, locate), which then work on a read-only file system too.
    """
    from flakefinder.cli.options import open_database

    return open_database(url, must_exist=must_exist, read_only=read_only)


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _query(db: Database, **kw: Any) -> FlakeQuery:
    from flakefinder.db import FlakeQuery

    chip = kw.pop("chip")
    chip_id: int | None = None
    if chip is not None:
        found = db.get_chip(int(chip) if chip.isdigit() else chip)
        if found is None:
            raise KeyError(f"no chip {chip!r} in {db.masked_url}")
        chip_id = found.id
    from flakefinder.cli import parse_materials

    names = _split(kw["materials"])
    return FlakeQuery(
        materials=parse_materials(names) if names else (),
        layer_classes=tuple(v.lower() for v in _split(kw["layer_classes"])),
        statuses=_split(kw["statuses"]),
        min_area_um2=kw["min_area"],
        max_area_um2=kw["max_area"],
        min_layer_count=kw["min_layers"],
        max_layer_count=kw["max_layers"],
        min_confidence=kw["min_confidence"],
        chip_id=chip_id,
        scan_id=kw["scan"],
        order_by=kw["order_by"],
        limit=kw["limit"],
        offset=kw["offset"],
    )


def _table(rows: list[StoredFlake], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} of {total} matching flakes")
    for col in ("id", "chip", "scan", "material", "class", "layers", "conf", "area µm²"):
        table.add_column(col, justify="right" if col not in ("material", "class") else "left")
    table.add_column("centroid µm (x, y)", justify="right")
    table.add_column("status")
    for f in rows:
        table.add_row(
            str(f.id),
            str(f.chip_id),
            str(f.scan_id),
            f.material,
            f.layer_class.value,
            "" if f.layer_count is None else str(f.layer_count),
            f"{f.confidence:.2f}",
            f"{f.area_um2:.1f}",
            f"{f.centroid_um[0]:.1f}, {f.centroid_um[1]:.1f}",
            f.status.value,
        )
    Console(width=max(120, Console().width)).print(table)


def _emit(fmt: str, rows: list[StoredFlake], total: int, out: Path | None) -> None:
    from flakefinder.db import flakes_to_csv, flakes_to_json

    if fmt == "table":
        _table(rows, total)
        return
    text = flakes_to_csv(rows) if fmt == "csv" else flakes_to_json(rows)
    if out is None:
        sys.stdout.write(text)
        return
    from flakefinder.artifacts import write_atomic
    from flakefinder.errors import OutputError

    try:
        write_atomic(out, text)  # a full disk keeps the export already at ``out``
    except OutputError as e:
        raise fail(str(e)) from None
    typer.echo(f"wrote {len(rows)} flakes to {out}", err=True)


def _run(db_url: str | None, fmt: str, out: Path | None, **filters: Any) -> None:
    from flakefinder.errors import FlakefinderError

    try:
        with open_db(db_url, read_only=True) as db:
            query = _query(db, **filters)
            rows = db.query_flakes(query)
            total = db.count_flakes(query) if fmt == "table" else len(rows)
    except (FlakefinderError, ValueError, KeyError) as e:
        raise fail(str(e).strip("'\"")) from None
    _emit(fmt, rows, total, out)


def register(app: typer.Typer) -> None:
    flakes = typer.Typer(
        help="Search the flake database, export flakes (CSV/JSON) and mark them used/rejected.",
        no_args_is_help=True,
    )

    def query_cmd(
        ctx: typer.Context,
        db: DbOpt = None,
        materials: MaterialsFilterOpt = None,
        material: OldMaterialOpt = None,
        layer_class: LayerClassOpt = None,
        min_area: MinAreaOpt = None,
        max_area: MaxAreaOpt = None,
        min_layers: MinLayersOpt = None,
        max_layers: MaxLayersOpt = None,
        min_confidence: MinConfOpt = None,
        chip: ChipOpt = None,
        scan: ScanOpt = None,
        status: StatusOpt = None,
        order_by: OrderOpt = "id",
        limit: LimitOpt = None,
        offset: OffsetOpt = 0,
        fmt: Annotated[
            ListFormat | None,
            typer.Option(
                "--format",
                "-f",
                help="list: table (default), csv or json; export: csv (default) or json.",
            ),
        ] = None,
        out: OutOpt = None,
    ) -> None:
        # `list` and `export` share every filter; they differ in default and allowed formats.
        exporting = ctx.info_name == "export"
        chosen = fmt or (ListFormat.csv if exporting else ListFormat.table)
        if exporting and chosen is ListFormat.table:
            raise typer.BadParameter("export writes csv or json", param_hint="--format")
        if material:
            deprecated_alias(1, "--material", "--materials")
        _run(db, chosen.value, out, materials=[*(materials or []), *(material or [])],
             layer_classes=layer_class,
             min_area=min_area, max_area=max_area, min_layers=min_layers, max_layers=max_layers,
             min_confidence=min_confidence, chip=chip, scan=scan, statuses=status,
             order_by=order_by, limit=limit, offset=offset)  # fmt: skip

    flakes.command(
        "list",
        help="List the flakes that match all the given filters (all flakes without filters).",
    )(query_cmd)
    flakes.command(
        "export",
        help="Export the matching flakes with all their columns (polygons included) as CSV or JSON.",
    )(query_cmd)

    @flakes.command("set-status")
    def set_status_cmd(
        flake_id: Annotated[int, typer.Argument(help="Flake id (see `flakefinder flakes list`).")],
        status: Annotated[str, typer.Argument(help="new, candidate, used or rejected.")],
        notes: Annotated[
            str | None, typer.Option("--notes", help="Replace the flake's notes with this text.")
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Mark a flake as a candidate, used (built into a device) or rejected."""
        from flakefinder.errors import FlakefinderError

        try:
            with open_db(db) as database:
                flake = database.set_flake_status(flake_id, status, notes)
        except (FlakefinderError, ValueError, KeyError) as e:
            raise fail(str(e).strip("'\"")) from None
        typer.echo(f"flake {flake.id}: status {flake.status.value}")

    @flakes.command("locate")
    def locate_cmd(
        flake_id: Annotated[int, typer.Argument(help="Flake id (see `flakefinder flakes list`).")],
        db: DbOpt = None,
        corners: Annotated[
            str | None,
            typer.Option(
                "--corners",
                help="Corners A and B of the remounted chip in stage µm 'x,y;x,y' (A: origin,"
                " B: along the chip x edge, as when scanning): print where to drive the stage.",
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object (full precision).")
        ] = False,
    ) -> None:
        """Position of a flake in chip µm (from corner A), and on a remounted chip's stage."""
        _locate(flake_id, db, corners, as_json)

    app.add_typer(flakes, name="flakes")


def _locate(flake_id: int, db_url: str | None, corners: str | None, as_json: bool) -> None:
    import json

    from flakefinder.domain import ChipFrame
    from flakefinder.errors import FlakefinderError

    remount: ChipFrame | None = None
    if corners is not None:
        from flakefinder.cli.scan import _parse_corners

        pts = _parse_corners(corners)
        if len(pts) != 2:
            raise typer.BadParameter("give corners A and B: 'x,y;x,y'", param_hint="--corners")
        try:
            remount = ChipFrame.from_corners(pts[0], pts[1])
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--corners") from None
    try:
        with open_db(db_url, read_only=True) as database:
            flake = database.get_flake(flake_id)
            if flake is None:
                raise KeyError(f"no flake with id {flake_id} in {database.masked_url}")
            scan = database.get_scan(flake.scan_id)
    except (FlakefinderError, ValueError, KeyError) as e:
        raise fail(str(e).strip("'\"")) from None
    raw = None if scan is None else scan.settings.get("chip_frame")
    note = None
    if raw is None:
        frame = ChipFrame.identity()
        note = f"scan {flake.scan_id} stored no chip frame: chip µm = stage µm (identity)"
    else:
        try:
            frame = ChipFrame.from_dict(raw)
        except ValueError as e:
            raise fail(f"scan {flake.scan_id}: {e}") from None
    cx, cy = frame.to_chip(*flake.centroid_um)
    pts_chip = [frame.to_chip(x, y) for x, y in flake.polygon_um]
    xs, ys = [p[0] for p in pts_chip], [p[1] for p in pts_chip]
    bbox = (min(xs), min(ys), max(xs), max(ys))
    stage = None if remount is None else remount.to_stage(cx, cy)
    if as_json:
        out = {
            "flake_id": flake.id,
            "scan_id": flake.scan_id,
            "chip_frame": frame.to_dict(),
            "chip_frame_stored": raw is not None,
            "centroid_chip_um": [cx, cy],
            "bbox_chip_um": list(bbox),
            "centroid_stage_um_at_scan": list(flake.centroid_um),
            "remount_frame": None if remount is None else remount.to_dict(),
            "stage_um": None if stage is None else list(stage),
        }
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"flake {flake.id}: {flake.material} {flake.layer_class.value}, scan {flake.scan_id}"
    )
    if note:
        typer.echo(f"note: {note}")
    else:
        typer.echo(
            f"chip frame: corner A at stage ({frame.origin_x_um:.3f}, {frame.origin_y_um:.3f}) µm,"
            f" chip x edge at {frame.angle_deg:.4f}°"
        )
    typer.echo(f"centroid, chip µm from corner A: x = {cx:.3f}, y = {cy:.3f}")
    typer.echo(
        f"bounding box, chip µm: x {bbox[0]:.3f} to {bbox[2]:.3f}, y {bbox[1]:.3f} to {bbox[3]:.3f}"
    )
    if remount is not None and stage is not None:
        typer.echo(
            f"remounted chip (x edge at {remount.angle_deg:.4f}°): drive the stage to"
            f" x = {stage[0]:.3f}, y = {stage[1]:.3f} µm"
        )
