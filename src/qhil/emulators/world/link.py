"""Links between nodes: loss, group delay, drifting polarization and delay, Eve.

The slow processes live on a fixed time grid (``polarization_step_s``, 1 ms by
default): step j's increments are counter-based draws of (link key, j), so the
fibre's state at a given time does not depend on how the timeline was chunked
into batches. Polarization performs a random walk on the Poincare sphere
(isotropic rotational diffusion: each step rotates by a Gaussian rotation vector
with per-axis variance ``drift^2 * step``); the delay performs a Gaussian random walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .component import Component, db_to_transmission
from .config import EavesdropperConfig, LinkConfig
from .errors import WorldTimeError
from .polarization import (
    F64,
    QUAT_IDENTITY,
    prefix_rotations,
    quat_from_rotvec,
    quat_to_jones,
    quat_to_matrix,
    random_quaternion,
)
from .rng import hash_normal

_HISTORY = 1 << 16
_BLOCK = 1024


class Eavesdropper:
    """Intercept-resend at the link input, on a ``fraction`` of the pulses."""

    def __init__(self, link: str, cfg: EavesdropperConfig) -> None:
        self.link = link
        self._cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.fraction = self._cfg.fraction
        self.resend_mu = self._cfg.resend_mu

    @property
    def fraction(self) -> float:
        return self._fraction

    @fraction.setter
    def fraction(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{self.link}.eavesdropper.fraction must be in [0, 1], got {value!r}")
        self._fraction = v

    @property
    def resend_mu(self) -> float | None:
        return self._resend_mu

    @resend_mu.setter
    def resend_mu(self, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{self.link}.eavesdropper.resend_mu must be >= 0 or None")
        self._resend_mu = None if value is None else float(value)

    @property
    def active(self) -> bool:
        return self._fraction > 0.0


class Link(Component):
    """A fibre (or free-space) link between nodes ``a`` and ``b``."""

    kind = "link"
    cfg: LinkConfig

    def __init__(
        self,
        name: str,
        cfg: LinkConfig,
        now_s: Callable[[], float],
        key: int,
        rng: np.random.Generator,
        step_ps: int,
    ) -> None:
        super().__init__(name, "", cfg, now_s)
        self.eavesdropper = Eavesdropper(name, cfg.eavesdropper)
        self._key = key
        self._rng = rng
        self.step_ps = step_ps

    def reset(self) -> None:
        self.eavesdropper.reset()
        q0 = (
            random_quaternion(self._rng)
            if self.cfg.initial_polarization == "random"
            else QUAT_IDENTITY
        )
        # History of the walk: q[j], delay offset[j] for j in [_j0, _j0 + len).
        self._j0 = 0
        self._q = np.asarray(q0, dtype=float)[None, :]
        self._dd = np.zeros(1)

    @property
    def a(self) -> str:
        return self.cfg.a

    @property
    def b(self) -> str:
        return self.cfg.b

    @property
    def transmission(self) -> float:
        return db_to_transmission(
            self.cfg.alpha_db_per_km * self.cfg.length_km + self.cfg.insertion_loss_db
        )

    @property
    def loss_db(self) -> float:
        return self.cfg.alpha_db_per_km * self.cfg.length_km + self.cfg.insertion_loss_db

    @property
    def base_delay_ps(self) -> float:
        return self.cfg.length_km * self.cfg.delay_us_per_km * 1e6

    def other_end(self, node: str) -> str:
        return self.cfg.b if node == self.cfg.a else self.cfg.a

    # -- slow processes ----------------------------------------------------------------

    def _extend(self, j_hi: int) -> None:
        j_last = self._j0 + len(self._dd) - 1
        if j_hi <= j_last:
            return
        # Extend in whole aligned blocks: each block's prefix products then come out
        # bit-identical however the timeline was chunked.
        j_hi = (j_hi // _BLOCK + 1) * _BLOCK
        js = np.arange(j_last + 1, j_hi + 1, dtype=np.int64)
        sig_pol = self.cfg.polarization_drift_rad_per_sqrt_s * math.sqrt(self.step_ps * 1e-12)
        sig_del = self.cfg.delay_drift_ps_per_sqrt_s * math.sqrt(self.step_ps * 1e-12)
        if sig_pol > 0:
            rv = np.stack([hash_normal(self._key, s, js) for s in (1, 2, 3)], axis=-1) * sig_pol
            new_q = prefix_rotations(quat_from_rotvec(rv), self._q[-1])
        else:
            new_q = np.broadcast_to(self._q[-1], (len(js), 4))
        if sig_del > 0:
            new_d = self._dd[-1] + np.cumsum(hash_normal(self._key, 4, js) * sig_del)
        else:
            new_d = np.full(len(js), self._dd[-1])
        q = np.concatenate([self._q, new_q])
        d = np.concatenate([self._dd, new_d])
        if len(d) > _HISTORY:
            cut = len(d) - _HISTORY
            q, d = q[cut:], d[cut:]
            self._j0 += cut
        self._q, self._dd = np.ascontiguousarray(q), d

    def _slice(self, j_lo: int, j_hi: int) -> tuple[F64, F64]:
        """Walk state at steps j_lo..j_hi; steps before power-on (j < 0) hold the state at 0."""
        pad = max(0, -j_lo)
        j_lo = max(j_lo, 0)
        self._extend(max(j_hi, 0))
        if j_lo < self._j0:
            raise WorldTimeError(
                f"{self.name}: fibre state at step {j_lo} is older than the kept history"
            )
        s = slice(j_lo - self._j0, max(j_hi, 0) - self._j0 + 1)
        q, d = self._q[s], self._dd[s]
        if pad:
            n = j_hi - (j_lo - pad) + 1
            q = np.concatenate([np.broadcast_to(self._q[0], (pad, 4)), q])[:n]
            d = np.concatenate([np.full(pad, self._dd[0]), d])[:n]
        return q, d

    def quats(self, j_lo: int, j_hi: int) -> F64:
        """Fibre rotation (a -> b direction) at grid steps j_lo..j_hi, shape (n, 4)."""
        return self._slice(j_lo, j_hi)[0]

    def delays_ps(self, j_lo: int, j_hi: int) -> F64:
        return self.base_delay_ps + self._slice(j_lo, j_hi)[1]

    def quat_at_ps(self, t_ps: int) -> F64:
        j = t_ps // self.step_ps
        return self.quats(j, j)[0]

    def unitary_at_ps(self, t_ps: int) -> np.ndarray:
        return quat_to_jones(self.quat_at_ps(t_ps))

    def rotation_at_ps(self, t_ps: int) -> F64:
        return quat_to_matrix(self.quat_at_ps(t_ps))

    def delay_at_ps(self, t_ps: int) -> float:
        j = t_ps // self.step_ps
        return float(self.delays_ps(j, j)[0])
