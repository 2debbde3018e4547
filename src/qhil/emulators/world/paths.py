"""Optical paths: the ordered elements light passes from a source to an analyzer or detector.

A path knows, on the slow-process grid (steps j), its polarization rotation (a
product of element rotations, links drifting), its transmission and its delay,
and how a photon with a given Stokes vector at the terminal is routed to the
terminal's detectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detector import Detector
from .link import Link
from .optics import Attenuator, PolarizationAnalyzer, PolarizationController, Waveplate
from .polarization import F64, QUAT_IDENTITY, quat_mul, quat_to_matrix

Element = Attenuator | PolarizationController | Waveplate | Link


def reversed_quat(q: F64) -> F64:
    """Rotation of a reciprocal element traversed backwards (Jones U -> U^T)."""
    out = np.array(q, dtype=float, copy=True)
    out[..., 3] = -out[..., 3]
    return out


@dataclass
class PathElement:
    element: Element
    # True if the light crosses a link from its ``b`` end to its ``a`` end.
    backwards: bool = False


class OpticalPath:
    """One route: elements in order, then a terminal (analyzer or single detector)."""

    def __init__(
        self,
        name: str,
        elements: list[PathElement],
        terminal: PolarizationAnalyzer | Detector,
        detectors: dict[str, Detector],
    ) -> None:
        self.name = name
        self.elements = elements
        self.terminal = terminal
        if isinstance(terminal, PolarizationAnalyzer):
            outs = terminal.outputs
            self.detectors = [detectors[o.detector] for o in outs]
            self._basis = np.array([o.basis for o in outs], dtype=np.intp)
            self._sign = np.array([o.sign for o in outs], dtype=float)
        else:
            self.detectors = [terminal]
            self._basis = np.zeros(1, dtype=np.intp)
            self._sign = np.zeros(1)

    @property
    def is_analyzer(self) -> bool:
        return isinstance(self.terminal, PolarizationAnalyzer)

    @property
    def detector_names(self) -> list[str]:
        return [d.name for d in self.detectors]

    def links(self) -> list[tuple[int, Link]]:
        return [
            (i, pe.element) for i, pe in enumerate(self.elements) if isinstance(pe.element, Link)
        ]

    def eve_index(self) -> int | None:
        """Position of the first link whose eavesdropper is active, if any."""
        for i, link in self.links():
            if link.eavesdropper.active:
                return i
        return None

    # -- slow quantities on the grid ------------------------------------------------------

    def transmission(self, start: int = 0, stop: int | None = None, terminal: bool = True) -> float:
        t = 1.0
        for pe in self.elements[start:stop]:
            t *= pe.element.transmission
        if terminal and stop is None and isinstance(self.terminal, PolarizationAnalyzer):
            t *= self.terminal.transmission
        return t

    def quats(self, j_lo: int, j_hi: int, start: int = 0, stop: int | None = None) -> F64:
        """Rotation of elements[start:stop] at steps j_lo..j_hi, shape (n, 4)."""
        n = j_hi - j_lo + 1
        static = QUAT_IDENTITY
        q: F64 | None = None  # the step-dependent part, once a link is met
        for pe in self.elements[start:stop]:
            el = pe.element
            if isinstance(el, Link):
                lq = el.quats(j_lo, j_hi)
                if pe.backwards:
                    lq = reversed_quat(lq)
                q = quat_mul(lq, static if q is None else q)
                static = QUAT_IDENTITY
            else:
                eq = el.quat
                if eq is QUAT_IDENTITY:
                    continue
                if q is None:
                    static = quat_mul(eq, static)
                else:
                    q = quat_mul(eq, q)
        if q is None:
            return np.broadcast_to(static, (n, 4))
        return q

    def rotations(self, j_lo: int, j_hi: int, start: int = 0, stop: int | None = None) -> F64:
        return quat_to_matrix(self.quats(j_lo, j_hi, start, stop))

    def delays_ps(self, j_lo: int, j_hi: int) -> F64:
        """Group delay source -> terminal at steps j_lo..j_hi."""
        n = j_hi - j_lo + 1
        d = np.full(n, self.terminal.delay_ps if self.is_analyzer else 0.0)
        for pe in self.elements:
            el = pe.element
            d = d + el.delays_ps(j_lo, j_hi) if isinstance(el, Link) else d + el.delay_ps
        return d

    def nominal_delay_ps(self) -> float:
        d = self.terminal.delay_ps if self.is_analyzer else 0.0
        for pe in self.elements:
            el = pe.element
            d += el.base_delay_ps if isinstance(el, Link) else el.delay_ps
        return d

    # -- routing at the terminal -----------------------------------------------------------

    def route(self, stokes: F64) -> F64:
        """Probability that a photon with Stokes vector ``stokes`` (..., 3) reaches each
        detector's input (before its efficiency), shape (..., n_detectors)."""
        if not self.is_analyzer:
            return np.ones((*stokes.shape[:-1], 1))
        an = self.terminal
        assert isinstance(an, PolarizationAnalyzer)
        contrast = 1.0 - 2.0 * an.leak
        proj = stokes @ an.axes.T  # (..., n_bases)
        proj_d = proj[..., self._basis]
        return an.weights[self._basis] * 0.5 * (1.0 + self._sign * contrast * proj_d)

    def analyzer_tables(self) -> tuple[F64, F64, float, np.ndarray, np.ndarray]:
        """(axes (nb, 3), weights (nb,), contrast, basis of detector, sign of detector)."""
        an = self.terminal
        assert isinstance(an, PolarizationAnalyzer)
        return an.axes, an.weights, 1.0 - 2.0 * an.leak, self._basis, self._sign.astype(np.intp)
