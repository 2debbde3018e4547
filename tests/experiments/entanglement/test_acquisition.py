"""acquire_pairs with stand-in taggers (synthetic pair streams): the clock model and the
coincidences, a frequency prior, a stream that fails in transport is read again, a buffer
overflow aborts, and the whole streams on request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from qhil.drivers.roles import TagBlock
from qhil.errors import TransportError
from qhil.numerics.timing import ClockModel
from qhil.orchestrator.experiments.entanglement import (
    CoincidenceOptions,
    EntanglementAborted,
    EntanglementNodes,
    acquire_pairs,
)

PS = 10**12
#: The clock search over +-30 ppm, not 100: a third of the scan (these tests are about the
#: acquisition around it, the search itself is clock sync's, tested there).
OPTS = CoincidenceOptions(max_frequency_offset_ppm=30.0)
#: B = A + 12.3 us (offset plus path difference) at +20 ppm.
TRUE = ClockModel(12.3e6, 20e-6, 0)


def _pair_streams(seed: int, duration_s: float) -> tuple[TagBlock, TagBlock, int]:
    rng = np.random.default_rng(seed)
    span = int(duration_s * PS)
    n = rng.poisson(3000 * duration_s)
    t0 = np.sort(rng.integers(0, span, n))
    outcome = rng.integers(0, 4, n)  # perfectly correlated outcomes (same detector)
    ta = t0 + np.rint(rng.normal(0, 300, n)).astype(np.int64)
    tb = np.rint(TRUE.b_from_a(t0 + np.rint(rng.normal(0, 300, n)).astype(np.int64)))
    nb = rng.poisson(1e4 * duration_s)
    a_t = np.concatenate([ta, rng.integers(0, span, nb)])
    a_c = np.concatenate([outcome + 1, rng.integers(1, 5, nb)])
    b_t = np.concatenate([tb.astype(np.int64), rng.integers(0, span, nb)])
    b_c = np.concatenate([outcome + 1, rng.integers(1, 5, nb)])
    oa, ob = np.argsort(a_t, kind="stable"), np.argsort(b_t, kind="stable")
    return (
        TagBlock(a_t[oa], a_c[oa].astype(np.int16)),
        TagBlock(b_t[ob], b_c[ob].astype(np.int16)),
        int(n),
    )


class StandInTagger:
    """``stream`` hands out one prepared block; ``fail`` streams fail first (in transport)."""

    def __init__(self, name: str, block: TagBlock, *, fail: int = 0, lost: int = 0) -> None:
        self.name = name
        self.block = block
        self.fail = fail
        self.lost = lost
        self.streams = 0

    async def stream(self, duration_s: float | None, chunk_s: float) -> AsyncIterator[TagBlock]:
        self.streams += 1
        if self.fail:
            self.fail -= 1
            raise TransportError(self.name, "timestamp stream corrupt: restart the stream")
        yield TagBlock(self.block.timestamps_ps, self.block.channels, lost=self.lost)


def _nodes(seed: int, **kw: int) -> tuple[EntanglementNodes, int]:
    a, b, n = _pair_streams(seed, 1.0)
    fail_a, lost_b = kw.get("fail_a", 0), kw.get("lost_b", 0)
    nodes = EntanglementNodes(
        StandInTagger("alice.tagger", a, fail=fail_a),  # type: ignore[arg-type]
        StandInTagger("bob.tagger", b, lost=lost_b),  # type: ignore[arg-type]
    )
    return nodes, n


async def test_clock_model_and_coincidences_from_the_streams() -> None:
    nodes, n = _nodes(1)
    acq = await acquire_pairs(nodes, 1.0, OPTS, keep_streams=True)
    assert abs(float(acq.model.offset_at(0)) - TRUE.offset_ps) < 100  # ps
    assert abs(acq.model.drift - TRUE.drift) < 1e-9
    m = acq.matrix
    # Correlated outcomes on the diagonal; off it only accidentals (~2e4^2/s * 5 ns ~ 1).
    assert np.trace(m) > 0.99 * n and m.sum() - np.trace(m) < 20
    assert acq.bob_all_t_ps.size == nodes.bob_tagger.block.timestamps_ps.size  # type: ignore[attr-defined]
    assert np.all(np.diff(acq.bob_all_t_ps) >= 0)
    # With the first model as prior the second acquisition finds the same.
    again = await acquire_pairs(nodes, 1.0, OPTS, prior=acq.model)
    assert abs(float(again.model.offset_at(0)) - TRUE.offset_ps) < 100
    assert np.array_equal(again.matrix, m)


async def test_a_stream_failing_in_transport_is_read_again() -> None:
    nodes, _ = _nodes(2, fail_a=2)
    acq = await acquire_pairs(nodes, 1.0, OPTS)
    assert nodes.alice_tagger.streams == 3  # type: ignore[attr-defined]
    assert nodes.bob_tagger.streams == 3  # type: ignore[attr-defined]
    assert acq.coincidences.coincidences > 2000
    nodes, _ = _nodes(2, fail_a=3)
    with pytest.raises(TransportError, match="restart the stream"):
        await acquire_pairs(nodes, 1.0, OPTS)


async def test_lost_tags_abort_naming_the_tagger() -> None:
    nodes, _ = _nodes(3, lost_b=17)
    with pytest.raises(
        EntanglementAborted, match=r"buffer_overflow: bob's tagger bob.tagger lost 17"
    ):
        await acquire_pairs(nodes, 1.0, OPTS)


class FirstEmptyTagger(StandInTagger):
    """The first stream comes back empty for this node (words silently missing)."""

    async def stream(self, duration_s: float | None, chunk_s: float) -> AsyncIterator[TagBlock]:
        self.streams += 1
        b = self.block
        keep = slice(None) if self.streams > 1 else slice(0, 0)
        yield TagBlock(b.timestamps_ps[keep], b.channels[keep])


async def test_a_lost_peak_with_a_prior_is_acquired_once_more() -> None:
    nodes, _ = _nodes(4)
    first = await acquire_pairs(nodes, 1.0, OPTS)
    nodes.alice_tagger = FirstEmptyTagger("alice.tagger", nodes.alice_tagger.block)  # type: ignore[attr-defined]
    again = await acquire_pairs(nodes, 1.0, OPTS, prior=first.model)
    assert nodes.alice_tagger.streams == 2  # type: ignore[attr-defined]
    assert np.array_equal(again.matrix, first.matrix)
    # Without a prior (nothing says a peak exists) no_peak is the answer at once.
    nodes.alice_tagger = FirstEmptyTagger("alice.tagger", nodes.alice_tagger.block)  # type: ignore[attr-defined]
    with pytest.raises(EntanglementAborted, match="no_peak"):
        await acquire_pairs(nodes, 1.0, OPTS)


async def test_heralded_reference_one_acquisition_serves_both_references() -> None:
    from qhil.orchestrator.experiments.entanglement.compensation import HeraldedReference

    nodes, _ = _nodes(5)
    ref = HeraldedReference(nodes, OPTS, None)
    await ref.load("H")
    await ref.settle(0.001)
    under_h = await ref.count(1.0)
    await ref.load("D")
    under_d = await ref.count(1.0)
    assert ref.acquisitions == 1 and nodes.alice_tagger.streams == 1  # type: ignore[attr-defined]
    # Outcomes perfectly correlated: alice's H heralds bob's H, her D his D.
    assert under_h[0] > 0 and max(under_h[1:]) < 0.01 * under_h[0]
    assert under_d[2] > 0 and max(under_d[0], under_d[1], under_d[3]) < 0.01 * under_d[2]
    ref.forget()  # new voltages: the kept D row no longer holds
    await ref.load("D")
    await ref.count(1.0)
    assert ref.acquisitions == 2 and ref.prior is not None
    with pytest.raises(ValueError, match="H, V, D or A"):
        await ref.load("R")
