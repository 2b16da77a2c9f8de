"""Config dataclasses with named presets on the command line: `--preset NAME` picks the starting values,
then tyro parses every field on top of them (`drrobot data --preset paper --camera.views 4`)."""

from __future__ import annotations

import argparse
from typing import TypeVar

import tyro

ConfigT = TypeVar("ConfigT")


def parse_with_presets(
    presets: dict[str, ConfigT], argv: list[str] | None, prog: str, description: str, default: str = "cpu-quick"
) -> ConfigT:
    """Parse `argv` into a config: the preset named by `--preset` (default `default`), then field overrides."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(presets), default=default)
    known, _ = pre.parse_known_args(argv)
    start = presets[known.preset]
    return tyro.cli(type(start), args=argv, default=start, prog=prog, description=description)
