"""Typer command-line interface (thin: heavy imports happen inside commands)."""
