"""Reference patterns: constant, fresh each upload, refused ones skipped, counts mapped."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.calibration import CalibrationError
from qhil.calibration.reference import MAX_REFUSALS, ReferenceSource, state_symbol
from qhil.errors import ValidationError

from .doubles import CHANNEL_MAP, LinkModel, doubles


def source(link: LinkModel, **kw: object) -> tuple[ReferenceSource, object]:
    d = doubles(link, kw.pop("channel_map", None))  # type: ignore[arg-type]
    cm = kw.pop("cm", CHANNEL_MAP)
    src = ReferenceSource(
        d.generator,
        d.tagger,
        cm,  # type: ignore[arg-type]
        80e6,
        pattern_length=1024,
        rng=np.random.default_rng(5),
        **kw,  # type: ignore[arg-type]
    )
    return src, d


def test_symbols() -> None:
    assert [state_symbol(s, 0) for s in "HVDA"] == [0, 1, 2, 3]
    assert state_symbol("D", 1) == 2 | 1 << 2
    with pytest.raises(ValueError, match="H, V, D, A"):
        state_symbol("R", 0)


async def test_every_upload_is_fresh_and_constant() -> None:
    src, d = source(LinkModel.random(1), intensity_index=1)
    lengths = [await src.load(s) for s in "HDHDHDHD" * 20]
    assert len(set(lengths)) == len(lengths)
    assert all(1024 <= n < 1024 + (1 << 16) for n in lengths)
    loaded = d.generator.loaded  # type: ignore[attr-defined]
    for s, pat in zip("HDHDHDHD" * 20, loaded, strict=True):
        assert np.all(pat == state_symbol(s, 1))
    assert src.uploads == 160 and src.refusals == 0


async def test_refused_lengths_are_skipped() -> None:
    # A second source on the same generator, starting where the first did: every clash
    # is refused (nothing sent) and skipped.
    link = LinkModel.random(2)
    first, d = source(link)
    used = [await first.load("H") for _ in range(40)]
    second = ReferenceSource(
        d.generator,  # type: ignore[attr-defined]
        d.tagger,  # type: ignore[attr-defined]
        CHANNEL_MAP,
        80e6,
        pattern_length=1024,
        rng=np.random.default_rng(5),  # same start as the first
    )
    n = await second.load("H")
    assert n not in used
    assert second.refusals >= 1
    assert d.generator.refused == second.refusals  # type: ignore[attr-defined]


async def test_always_refused_is_a_clear_error() -> None:
    class Refusing:
        async def load_pattern(self, symbols: np.ndarray, rate: float) -> None:
            raise ValueError("already uploaded")

    src, _ = source(LinkModel.random(3))
    src.generator = Refusing()  # type: ignore[assignment]
    with pytest.raises(CalibrationError, match=f"refused {MAX_REFUSALS}"):
        await src.load("D")


async def test_validation_errors_are_not_retried() -> None:
    src, d = source(LinkModel.random(4))
    src.rep_rate_hz = 1e6  # the double wants 80 MHz
    with pytest.raises(ValidationError):
        await src.load("H")
    assert d.generator.loaded == []  # type: ignore[attr-defined]


async def test_counts_follow_the_channel_map() -> None:
    link = LinkModel.random(5, fibre=np.eye(3), prep_error=0.0)
    cm = {"H": 4, "V": 2, "D": 1, "A": 3}
    src, d = source(link, channel_map=cm, cm=cm)
    await src.load("H")
    h, v, dd, a = await src.count(0.01)
    # H sent through an identity link: V never clicks, D and A share the other half.
    assert v == 0 and h > 0 and dd > 0 and a > 0
    await src.settle(1e-3)
    await src.settle(0.0)
    assert src.settle_gates == 1
    assert d.tagger.gates == [0.01, 1e-3]  # type: ignore[attr-defined]


async def test_missing_channel_is_reported() -> None:
    src, _ = source(LinkModel.random(6))
    src.channel_map = {"H": 1, "V": 2, "D": 3, "A": 7}
    with pytest.raises(CalibrationError, match="reports 4 channels"):
        await src.count(1e-3)


def test_bad_construction() -> None:
    link = LinkModel.random(7)
    d = doubles(link)
    with pytest.raises(ValueError, match="exactly H, V, D and A"):
        ReferenceSource(d.generator, d.tagger, {"H": 1}, 80e6, pattern_length=1024)
    with pytest.raises(ValueError, match="distinct"):
        ReferenceSource(
            d.generator, d.tagger, {"H": 1, "V": 1, "D": 3, "A": 4}, 80e6, pattern_length=1024
        )
    with pytest.raises(ValueError, match="rep_rate_hz"):
        ReferenceSource(d.generator, d.tagger, CHANNEL_MAP, 0.0, pattern_length=1024)
