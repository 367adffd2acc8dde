"""``flakefinder db upgrade|info``: create/update the database schema and show what it holds."""

from __future__ import annotations

import typer

from flakefinder.cli.flakes import fail, open_db
from flakefinder.cli.options import DbOpt


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Manage the flake database: create/upgrade its schema, show its contents.",
        no_args_is_help=True,
    )

    @group.command("upgrade")
    def upgrade_cmd(db: DbOpt = None) -> None:
        """Create the tables or migrate them to the newest schema (safe to run repeatedly)."""
        from flakefinder.errors import FlakefinderError

        try:
            with open_db(db, must_exist=False) as database:
                before, head = database.schema_revision()
                database.migrate()
        except FlakefinderError as e:
            raise fail(str(e)) from None
        if before == head:
            typer.echo(f"{database.masked_url}: schema already at revision {head}")
        else:
            typer.echo(f"{database.masked_url}: schema upgraded from {before or 'empty'} to {head}")

    @group.command("info")
    def info_cmd(db: DbOpt = None) -> None:
        """Show the database URL (password hidden), schema revision and row counts per table."""
        from flakefinder.errors import FlakefinderError

        try:
            with open_db(db, read_only=True) as database:
                current, head = database.schema_revision()
                counts = database.table_counts() if current is not None else {}
        except FlakefinderError as e:
            raise fail(str(e)) from None
        typer.echo(f"url:      {database.masked_url}")
        state = "up to date" if current == head else "run `flakefinder db upgrade`"
        typer.echo(f"schema:   {current or 'none'} (newest {head}; {state})")
        for table, n in counts.items():
            typer.echo(f"{table + ':':<10}{n}")

    app.add_typer(group, name="db")
