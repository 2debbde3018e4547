"""What a BB84 run reports: per party, combined, and progress events.

Keys appear only as :class:`~qhil.records.KeyRef` (id, length, SHA-256); the
bits stay in the key store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from qhil.numerics.qkd import (
    DecoyBounds,
    FiniteKeyResult,
    decoy_key_rate,
    vacuum_weak_decoy_bounds,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason
from qhil.orchestrator.experiments.bb84.statistics import BB84Statistics, decoy_counts
from qhil.records import KeyRef

#: Error-correction inefficiency assumed by the asymptotic rate (a typical Cascade f).
ASYMPTOTIC_F_EC = 1.16

Party = Literal["alice", "bob"]
Status = Literal["success", "aborted"]


@dataclass(frozen=True)
class BB84Progress:
    """A progress event: ``stage`` is ``"block"`` (``block`` of ``n_blocks`` done),
    ``"reconcile"``, ``"verify"``, ``"amplify"``, ``"confirm"`` or ``"done"``."""

    party: Party
    stage: str
    block: int
    n_blocks: int
    sifted_bits: int
    detail: str = ""


@dataclass(frozen=True)
class PartyResult:
    """One party's view: public statistics (equal at both nodes) and its own key reference.

    ``committed``: the key is usable in this party's key store (it was confirmed);
    ``commit``: ``"acknowledged"`` (the peer's commit message arrived) or ``"presumed"``
    (Alice only: Bob's acknowledgement was lost after both tags matched, see the README).
    """

    party: Party
    statistics: BB84Statistics
    decoy_bounds: DecoyBounds | None = None
    leaked_bits: int | None = None
    finite_key: FiniteKeyResult | None = None
    key: KeyRef | None = None
    committed: bool = False
    commit: str | None = None
    #: The privacy-amplification hash family (``Amplification.family``) that made the key.
    pa_family: str | None = None

    @property
    def key_sha256(self) -> str | None:
        return None if self.key is None else self.key.sha256


class KeyPairOutcome:
    """What both QKD results (BB84's, BBM92's) say about the two nodes' keys."""

    alice_key: KeyRef | None
    bob_key: KeyRef | None

    @property
    def secret_bits(self) -> int:
        return 0 if self.alice_key is None else self.alice_key.length_bits

    @property
    def keys_match(self) -> bool:
        """Both nodes hold a key with the same SHA-256 (the only comparison made)."""
        a, b = self.alice_key, self.bob_key
        return a is not None and b is not None and a.sha256 == b.sha256


@dataclass(frozen=True)
class BB84Result(KeyPairOutcome):
    """The run's outcome (``status`` "success" or "aborted", with ``reason``)."""

    status: Status
    statistics: BB84Statistics
    probabilities: tuple[float, float, float]
    eps_sec: float
    eps_cor: float
    reason: AbortReason | None = None
    detail: str = ""
    decoy_bounds: DecoyBounds | None = None
    leaked_bits: int | None = None
    finite_key: FiniteKeyResult | None = None
    alice_key: KeyRef | None = None
    bob_key: KeyRef | None = None
    #: Both keys were confirmed and committed (usable); False whenever aborted.
    committed: bool = False
    #: The privacy-amplification hash family that made the keys (None before amplifying).
    pa_family: str | None = None

    @property
    def key_rate_bps(self) -> float:
        """Secret bits per second of acquisition time (Bob's tagger windows)."""
        t = self.statistics.acquisition_s
        return self.secret_bits / t if t > 0 else 0.0

    @property
    def key_rate_per_pulse(self) -> float:
        """Secret bits per pulse sent (revealed alignment pulses included in the count)."""
        n = self.statistics.pulses_sent
        return self.secret_bits / n if n else 0.0

    @property
    def asymptotic_rate_per_pulse(self) -> float | None:
        """The asymptotic decoy-state rate per pulse at this run's yields and error rates.

        GLLP ``Q1 (1 - h(e1)) - f Q_mu h(E_mu)`` (f = :data:`ASYMPTOTIC_F_EC`) with the
        vacuum + weak decoy estimates of Y1 and e1 taken from the observed gains and QBERs
        as if they were their expectations (infinitely many pulses: no finite-size terms),
        and basis sifting q -> 1 (in the limit a biased basis choice keeps almost every
        detection, Lo, Chau, Ardehali 2005). What this channel would give an infinitely
        long run; compare with ``numerics.qkd.key_rate``'s model (whose ``q_sift`` is 1/2
        in PHYSICS.md's GYS reference), not with the finite ``key_rate_per_pulse``.
        None when the estimates cannot be formed (no vacuum level, no decoy test bits).
        """
        s = self.statistics
        if s.mus[2] != 0 or s.test_sifted[1] == 0 or np.any(s.pulses == 0):
            return None
        bounds = vacuum_weak_decoy_bounds(decoy_counts(s))
        return float(decoy_key_rate(bounds, f_ec=ASYMPTOTIC_F_EC, q_sift=1.0))

    def to_results(self) -> dict[str, Any]:
        """Flat scalars for a run record (``run.log_results(**result.to_results())``)."""
        s = self.statistics
        out: dict[str, Any] = {
            "status": self.status,
            "reason": None if self.reason is None else self.reason.value,
            "blocks": s.blocks,
            "blocks_used": s.blocks_used,
            "acquisition_s": s.acquisition_s,
            "sifted_bits": s.sifted_key_bits,
            "secret_bits": self.secret_bits,
            "key_rate_bps": self.key_rate_bps,
            "key_rate_per_pulse": self.key_rate_per_pulse,
            "leaked_bits": self.leaked_bits,
            "eps_sec": self.eps_sec,
            "eps_cor": self.eps_cor,
            "key_committed": self.committed,
            "pa_family": self.pa_family,
            "alice_key_sha256": None if self.alice_key is None else self.alice_key.sha256,
            "bob_key_sha256": None if self.bob_key is None else self.bob_key.sha256,
        }
        qk = s.qber_key
        for i, name in enumerate(("signal", "decoy", "vacuum")):
            out[f"mu_{name}"] = s.mus[i]
            out[f"gain_{name}"] = float(s.gains[i])
            out[f"qber_test_{name}"] = _finite(s.qber_test[i])
            out[f"qber_key_{name}"] = None if qk is None else _finite(qk[i])
        if self.decoy_bounds is not None:
            out["y1_lower"] = float(self.decoy_bounds.y1_lower)
            out["e1_upper"] = float(self.decoy_bounds.e1_upper)
            out["q1_lower"] = float(self.decoy_bounds.q1_lower)
        out["asymptotic_rate_per_pulse"] = self.asymptotic_rate_per_pulse
        if self.finite_key is not None:
            out["phase_error_bound"] = float(self.finite_key.phase_error)
            out["s1_key_lower"] = float(self.finite_key.s1_key)
        return out


def _finite(x: float | np.floating[Any]) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def combine(
    alice: PartyResult,
    bob: PartyResult,
    probabilities: tuple[float, float, float],
    eps_sec: float,
    eps_cor: float,
) -> BB84Result:
    """Both parties finished with a key: the combined successful result."""
    return BB84Result(
        status="success",
        statistics=alice.statistics,
        probabilities=probabilities,
        eps_sec=eps_sec,
        eps_cor=eps_cor,
        decoy_bounds=alice.decoy_bounds,
        leaked_bits=alice.leaked_bits,
        finite_key=alice.finite_key,
        alice_key=alice.key,
        bob_key=bob.key,
        committed=alice.committed and bob.committed,
        pa_family=alice.pa_family,
    )
