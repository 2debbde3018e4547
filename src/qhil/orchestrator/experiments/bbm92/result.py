"""What a BBM92 run reports: the public counts both parties share, and the outcome.

Keys appear only as :class:`~qhil.records.KeyRef` (id, length, SHA-256).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from qhil.numerics.qkd.bbm92 import BBM92FiniteKey
from qhil.orchestrator.experiments.bb84.errors import AbortReason
from qhil.orchestrator.experiments.bb84.result import KeyPairOutcome
from qhil.records import KeyRef


@dataclass
class BBM92Counts:
    """Public counts (equal at both nodes: every number comes from public messages)."""

    acquisition_s: float = 0.0
    coincidences: int = 0  # used for the key (each event in one coincidence only)
    sifted: int = 0  # both analysers in the same basis
    key_bits: int = 0  # sifted in the key basis (H/V): the raw key
    test_bits: int = 0  # sifted in the test basis (D/A): all disclosed
    test_errors: int = 0
    key_errors: int | None = None  # corrected by Cascade (exact once verified)

    @property
    def qber_test(self) -> float:
        return self.test_errors / self.test_bits if self.test_bits else math.nan

    @property
    def qber_key(self) -> float | None:
        if self.key_errors is None or not self.key_bits:
            return None
        return self.key_errors / self.key_bits

    @property
    def qber(self) -> float:
        """Both bases' errors over both bases' sifted bits (the test's alone before Cascade)."""
        if self.key_errors is None:
            return self.qber_test
        n = self.key_bits + self.test_bits
        return (self.key_errors + self.test_errors) / n if n else math.nan

    @property
    def sifted_rate_hz(self) -> float:
        return self.sifted / self.acquisition_s if self.acquisition_s > 0 else 0.0


@dataclass(frozen=True)
class BBM92Result(KeyPairOutcome):
    """The run's outcome (``status`` "success" or "aborted", with ``reason``)."""

    status: Literal["success", "aborted"]
    counts: BBM92Counts
    eps_sec: float
    eps_cor: float
    reason: AbortReason | None = None
    detail: str = ""
    leaked_bits: int | None = None
    finite_key: BBM92FiniteKey | None = None
    alice_key: KeyRef | None = None
    bob_key: KeyRef | None = None
    committed: bool = False
    #: The privacy-amplification hash family that made the key (None before amplifying).
    pa_family: str | None = None

    @property
    def secret_bits(self) -> int:
        """The key's length (a party's own view holds only its own key)."""
        ref = self.alice_key or self.bob_key
        return 0 if ref is None else ref.length_bits

    def to_results(self) -> dict[str, Any]:
        """Flat scalars for a run record and the JSON summary."""
        c = self.counts
        t = c.acquisition_s

        def finite(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        out: dict[str, Any] = {
            "status": self.status,
            "reason": None if self.reason is None else self.reason.value,
            "acquisition_s": t,
            "coincidences_used": c.coincidences,
            "sifted_bits": c.sifted,
            "sifted_rate_hz": c.sifted_rate_hz,
            "key_basis_bits": c.key_bits,
            "test_basis_bits": c.test_bits,
            "test_errors": c.test_errors,
            "qber_test": finite(c.qber_test),
            "qber_key": finite(c.qber_key),
            "qber": finite(c.qber),
            "leaked_bits": self.leaked_bits,
            "pa_family": self.pa_family,
            "secret_bits": self.secret_bits,
            "key_rate_bps": self.secret_bits / t if t > 0 else 0.0,
            "eps_sec": self.eps_sec,
            "eps_cor": self.eps_cor,
            "key_committed": self.committed,
            "alice_key_sha256": None if self.alice_key is None else self.alice_key.sha256,
            "bob_key_sha256": None if self.bob_key is None else self.bob_key.sha256,
        }
        if self.finite_key is not None:
            out["finite_key_mu"] = finite(self.finite_key.mu)
            out["phase_error_bound"] = finite(self.finite_key.phase_error)
            out["finite_key_length"] = self.finite_key.length
        return out
