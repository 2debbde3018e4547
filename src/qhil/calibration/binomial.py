"""Error fractions counted from clicks, with exact (Clopper-Pearson) binomial intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import beta


def clopper_pearson(errors: int, total: int, confidence: float) -> tuple[float, float]:
    """Two-sided exact interval of a binomial fraction at ``confidence`` (e.g. 0.95)."""
    _check(errors, total, confidence)
    if total == 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2
    lo = 0.0 if errors == 0 else float(beta.ppf(tail, errors, total - errors + 1))
    hi = 1.0 if errors == total else float(beta.ppf(1 - tail, errors + 1, total - errors))
    return lo, hi


def upper_bound(errors: int, total: int, confidence: float) -> float:
    """One-sided exact upper bound of a binomial fraction at ``confidence``."""
    _check(errors, total, confidence)
    if total == 0 or errors == total:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, total - errors))


def _check(errors: int, total: int, confidence: float) -> None:
    if not 0 <= errors <= total:
        raise ValueError(f"need 0 <= errors <= total, got {errors} of {total}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


@dataclass(frozen=True)
class ErrorFraction:
    """Clicks on the wrong detector of a basis, out of all clicks in that basis."""

    errors: int
    total: int

    @property
    def value(self) -> float:
        """The fraction (NaN without clicks)."""
        return self.errors / self.total if self.total else math.nan

    @property
    def std(self) -> float:
        """Binomial standard error (NaN without clicks)."""
        if not self.total:
            return math.nan
        p = self.errors / self.total
        return math.sqrt(p * (1 - p) / self.total)

    def variance(self) -> float:
        """Binomial variance of the estimate, floored at one count's worth so 0/n is not exact."""
        if not self.total:
            return math.inf
        p = max(self.errors, 1) / self.total
        return p * (1 - p) / self.total

    def interval(self, confidence: float) -> tuple[float, float]:
        return clopper_pearson(self.errors, self.total, confidence)

    def upper(self, confidence: float) -> float:
        return upper_bound(self.errors, self.total, confidence)
