"""Errors raised by the timing numerics."""

from __future__ import annotations

from qhil.errors import QhilError


class TimingError(QhilError):
    """Base of the errors raised by :mod:`qhil.numerics.timing`."""


class TimingInputError(TimingError, ValueError):
    """An argument is malformed: wrong dtype, not sorted, negative window, ...

    The message names the argument and what is wrong with it.
    """


class PeakNotFoundError(TimingError):
    """A correlation peak was not significant enough to trust.

    ``stage`` names the search step that failed, ``significance`` is the peak's
    height above the background in units of the background's standard deviation,
    ``threshold`` the significance that was required.
    """

    def __init__(
        self,
        stage: str,
        significance: float,
        threshold: float,
        hint: str = "",
        *,
        problem: str | None = None,
    ) -> None:
        self.stage = stage
        self.significance = significance
        self.threshold = threshold
        extra = f"; {hint}" if hint else ""
        what = problem or (
            f"no significant correlation peak (significance {significance:.2f} "
            f"< required {threshold:.2f})"
        )
        super().__init__(f"{stage}: {what}{extra}")


class AlignmentError(PeakNotFoundError):
    """The BB84 pulse-train alignment could not establish the pulse mapping."""
