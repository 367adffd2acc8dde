"""Run ``flakefinder ARGS`` in the test's own process (the Typer app's ``main``)."""

from __future__ import annotations

import sys

import pytest

from flakefinder.cli.main import main


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``flakefinder ARGS``; fails the test on a traceback."""
    monkeypatch.setattr(sys, "argv", ["flakefinder", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err, cap.err
    return code, cap.out, cap.err
