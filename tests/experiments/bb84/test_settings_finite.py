"""BB84Settings refuses inf and NaN in every float field, built directly from Python.

The profile loader refuses non-finite numbers before they reach the settings; a settings
table built in code (a user's own script, a test) has only the model's own checks:
``duration_s = inf`` used to pass ``gt=0`` and overflow ``n_blocks``.
"""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
from pydantic import ValidationError

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.bb84 import BB84Settings

from .test_settings import GOOD


def _float_fields() -> list[str]:
    """Every field whose annotation holds a float (alone, optional, or in a tuple)."""
    names = []
    for name, info in BB84Settings.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann)
        if ann is float or float in args:
            names.append(name)
    return names


FLOAT_FIELDS = _float_fields()


def test_the_float_fields_are_found() -> None:
    # Guards the enumeration itself: an empty list would make the test below vacuous.
    assert {"rep_rate_hz", "mus", "duration_s", "max_qber", "settle_s", "eps_pe"} <= set(
        FLOAT_FIELDS
    )


def _table(field: str, value: float) -> dict[str, Any]:
    table = dict(GOOD)
    if field in ("mus", "intensity_probabilities"):
        table[field] = [value, *table[field][1:]]
    else:
        table[field] = value
    if field == "duration_s":
        del table["blocks"]
    return table


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_non_finite_float_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        BB84Settings.model_validate(_table(field, value))
    assert info.value.errors()[0]["loc"][0] == field
    with pytest.raises(ConfigError) as cerr:
        BB84Settings.from_mapping(_table(field, value), "p.toml")
    assert str(cerr.value).startswith(f"p.toml: experiments.bb84.{field}"), str(cerr.value)


def test_infinite_duration_says_finite() -> None:
    with pytest.raises(ConfigError, match=r"duration_s: must be a finite number \(got inf\)"):
        BB84Settings.from_mapping(_table("duration_s", math.inf), "p.toml")


def test_finite_duration_still_accepted() -> None:
    s = BB84Settings.from_mapping(_table("duration_s", 0.5), "p.toml")
    assert s.n_blocks == math.ceil(0.5 / s.block_duration_s)
