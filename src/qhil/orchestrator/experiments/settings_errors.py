"""A settings table's validation error as the one-line ConfigError every command prints."""

from __future__ import annotations

from pydantic import ValidationError

from qhil.errors import ConfigError


def table_error(exc: ValidationError, source: str, table: str) -> ConfigError:
    """pydantic's first error in ``table`` (e.g. ``experiments.bb84``) as a ConfigError
    naming the file and the field: ``table.field[index].sub``; a non-finite number says so."""
    first = exc.errors()[0]
    loc = table
    for part in first["loc"]:
        if part != "[key]":  # a mapping's key error: the mapping's field is the place
            loc += f"[{part}]" if isinstance(part, int) else f".{part}"
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "finite_number":
        msg = f"must be a finite number (got {first['input']!r})"
    return ConfigError(source, loc, msg)
