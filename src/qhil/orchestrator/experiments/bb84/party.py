"""What Alice and Bob share: the public tally, hooks, the abort checks, the key length.

Each party runs its own copy; they agree on every number because every number
comes from public messages both have seen.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd import DecoyBounds, FiniteKeyResult
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.pattern import secure_generator
from qhil.orchestrator.experiments.bb84.result import (
    BB84Progress,
    BB84Result,
    Party,
    PartyResult,
)
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.statistics import (
    N_INTENSITIES,
    SIGNAL,
    BB84Statistics,
    Tally,
    decoy_bounds,
    finite_key,
)
from qhil.records import KeyRef, KeyStore

log = logging.getLogger("qhil.orchestrator.experiments.bb84")

#: ``progress(event)``; may return an awaitable.
ProgressHook = Callable[[BB84Progress], Any]
#: ``on_data(name, array)`` (e.g. a run record's ``append``); may return an awaitable.
DataHook = Callable[[str, np.ndarray], Any]

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]


async def _call(hook: Callable[..., Any] | None, *args: Any) -> None:
    if hook is None:
        return
    out = hook(*args)
    if inspect.isawaitable(out):
        await out


class PartyBase:
    """State and steps common to both parties."""

    party: Party

    def __init__(
        self,
        settings: BB84Settings,
        link: PeerLink,
        *,
        key_store: KeyStore,
        run_id: str | None,
        progress: ProgressHook | None,
        on_data: DataHook | None,
        rng: np.random.Generator | None,
    ) -> None:
        self.settings = settings
        self.link = link
        self.key_store = key_store
        self.run_id = run_id
        self.progress = progress
        self.on_data = on_data
        self.rng = rng if rng is not None else secure_generator()
        self.tally = Tally(settings.mus)
        self._key_parts: list[U8] = []
        self._key_intensity_parts: list[U8] = []
        self.bounds: DecoyBounds | None = None
        self.leaked_bits: int | None = None
        self.finite: FiniteKeyResult | None = None

    # --- hooks ---

    async def emit(self, stage: str, block: int, detail: str = "") -> None:
        event = BB84Progress(
            self.party,
            stage,
            block,
            self.settings.n_blocks,
            int(self.tally.key_sifted.sum()),
            detail,
        )
        await _call(self.progress, event)

    async def persist(self, name: str, schema: np.dtype, row: dict[str, float | int]) -> None:
        """One row of ``schema`` under ``<party>/<name>`` through the raw-data hook.

        Fields missing from ``row`` are -1 (integers) or NaN (floats), so every row of
        a name has the same dtype (a run record's arrays require it).
        """
        if self.on_data is None:
            return
        unknown = set(row) - set(schema.names or ())
        if unknown:  # pragma: no cover - a programming error
            raise KeyError(f"{name}: fields {sorted(unknown)} are not in the row schema")
        arr = np.zeros(1, dtype=schema)
        for field in schema.names or ():
            arr[field] = row.get(field, np.nan if schema[field].kind == "f" else -1)
        await _call(self.on_data, f"{self.party}/{name}", arr)

    # --- key material ---

    def add_key_part(self, bits: U8, intensity: U8) -> None:
        self._key_parts.append(bits.astype(np.uint8))
        self._key_intensity_parts.append(intensity.astype(np.uint8))

    def raw_key(self) -> tuple[U8, U8]:
        """The sifted key-basis bits of all blocks (block order, then position) and their
        intensity indices."""
        if not self._key_parts:
            return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
        return np.concatenate(self._key_parts), np.concatenate(self._key_intensity_parts)

    # --- checks both parties make on the same public numbers ---

    def abort(self, reason: AbortReason, detail: str) -> BB84Aborted:
        return BB84Aborted(reason, detail, result=self.partial_result(reason, detail))

    def partial_result(self, reason: AbortReason, detail: str) -> BB84Result:
        s = self.settings
        return BB84Result(
            status="aborted",
            statistics=self.tally.snapshot(),
            probabilities=s.intensity_probabilities,
            eps_sec=s.eps_sec,
            eps_cor=s.eps_cor,
            reason=reason,
            detail=detail,
            decoy_bounds=self.bounds,
            leaked_bits=self.leaked_bits,
            finite_key=self.finite,
        )

    def check_estimates(self) -> BB84Statistics:
        """After the blocks: enough data, and the test-basis signal QBER under the threshold."""
        stats = self.tally.snapshot()
        if stats.blocks_used == 0:
            raise self.abort(AbortReason.NO_DATA, f"none of {stats.blocks} blocks could be aligned")
        if stats.sifted_key_bits == 0 or stats.test_sifted[SIGNAL] == 0:
            raise self.abort(
                AbortReason.NO_DATA,
                f"{stats.sifted_key_bits} key-basis and {int(stats.test_sifted[SIGNAL])} "
                f"signal test-basis bits after sifting",
            )
        try:
            self.bounds = decoy_bounds(stats, self.settings.eps_pe_effective)
        except ValueError as exc:  # degenerate counts: nothing to report, the key length decides
            log.info("%s: decoy bounds not available: %s", self.party, exc)
        q = float(stats.qber_test[SIGNAL])
        if q > self.settings.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"test-basis QBER of the signal intensity {100 * q:.2f} % over "
                f"{int(stats.test_sifted[SIGNAL])} bits exceeds {100 * self.settings.max_qber:g} %",
            )
        return stats

    def record_key_errors(self, key_errors: I64) -> BB84Statistics:
        """After verification: the key-basis QBER of the signal must pass too."""
        self.tally.key_errors = np.asarray(key_errors, dtype=np.int64)
        stats = self.tally.snapshot()
        qk = stats.qber_key
        assert qk is not None
        q = float(qk[SIGNAL])
        if q > self.settings.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"key-basis QBER of the signal intensity {100 * q:.2f} % (from reconciliation) "
                f"exceeds {100 * self.settings.max_qber:g} %",
            )
        return stats

    def key_length(self, stats: BB84Statistics) -> int:
        s = self.settings
        assert self.leaked_bits is not None
        self.finite = finite_key(
            stats, s.intensity_probabilities, self.leaked_bits, s.eps_sec, s.eps_cor
        )
        if self.finite.length <= 0:
            f = self.finite
            raise self.abort(
                AbortReason.NO_KEY,
                f"finite-key length is 0: {stats.sifted_key_bits} sifted bits, single-photon "
                f"bound {f.s1_key:.0f}, phase error bound {f.phase_error:.4f}, "
                f"{self.leaked_bits} bits leaked in reconciliation, "
                f"{f.correction_bits:.0f} bits of epsilon terms",
            )
        return self.finite.length

    def valid_key_errors(self, errors: I64) -> bool:
        e = np.asarray(errors)
        return (
            e.shape == (N_INTENSITIES,)
            and bool(np.all(e >= 0))
            and bool(np.all(e <= self.tally.key_sifted))
        )

    def store_key(self, bits: U8) -> KeyRef:
        ref = self.key_store.save(bits, run_id=self.run_id, label=self.party)
        log.info(
            "bb84 %s: stored key %s, %d bits, sha256 %s",
            self.party,
            ref.key_id,
            ref.length_bits,
            ref.sha256,
        )
        return ref

    def result(self, key: KeyRef) -> PartyResult:
        return PartyResult(
            self.party, self.tally.snapshot(), self.bounds, self.leaked_bits, self.finite, key
        )
