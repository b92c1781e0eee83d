"""The `rapport` command: one typer app; each concern adds its commands from its own module."""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="rapport",
    help="Rapport: customer context for contact centres. Human output by default, --json for scripts.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    # A callback keeps `rapport <command>` a command group even while only one concern is registered.
    pass


# Modules that define `register(app)`; each adds its own commands.
COMMAND_MODULES = (
    "rapport.cli.profile",
    "rapport.cli.timeline",
    "rapport.cli.router",
    "rapport.cli.ops",
    "rapport.cli.journeys",
    "rapport.cli.merges",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # that concern has not landed yet
        module.register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    _register_all()
    app()
