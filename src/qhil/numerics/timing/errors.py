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


class NoCorrelationPeakError(PeakNotFoundError):
    """No correlation peak between two timestamp streams, with the rates that were seen.

    ``rate_a_hz`` / ``rate_b_hz`` are the event rates of the two streams over
    ``duration_s``: zero or very different rates point at the source or a fibre,
    similar healthy rates at the search range or too little data.
    """

    def __init__(
        self,
        stage: str,
        significance: float,
        threshold: float,
        *,
        rate_a_hz: float,
        rate_b_hz: float,
        duration_s: float,
    ) -> None:
        self.rate_a_hz = rate_a_hz
        self.rate_b_hz = rate_b_hz
        self.duration_s = duration_s
        super().__init__(
            stage,
            significance,
            threshold,
            problem=(
                f"no correlation peak (significance {significance:.1f} < required "
                f"{threshold:.1f}) with A at {rate_a_hz:.4g} events/s and B at "
                f"{rate_b_hz:.4g} events/s over {duration_s:.4g} s; check that the pair "
                "source is on and both fibres reach their detectors, that the search "
                "range covers the clock offset, or take more data"
            ),
        )


class RateTooLowError(TimingError):
    """Too few coincidences per tracking interval for the requested precision.

    The offset error of one interval is ``sigma_rel / sqrt(N)``: a precision ``p``
    needs ``N >= (sigma_rel / p)**2`` coincidences (``needed``); ``seen`` were found.
    """

    def __init__(
        self,
        *,
        sigma_rel_ps: float,
        precision_ps: float,
        needed: int,
        seen: int,
        interval_s: float,
    ) -> None:
        self.sigma_rel_ps = sigma_rel_ps
        self.precision_ps = precision_ps
        self.needed = needed
        self.seen = seen
        self.interval_s = interval_s
        rate = seen / interval_s if interval_s > 0 else 0.0
        advice = (
            f"a {needed / rate:.3g} s interval or a {needed / seen:.3g}x higher pair rate would do"
            if seen > 0
            else "no coincidences at all: check the source and the fibres"
        )
        super().__init__(
            f"coincidence rate too low for {precision_ps:g} ps per interval: need N >= "
            f"(sigma_rel/precision)^2 = ({sigma_rel_ps:.4g}/{precision_ps:g})^2 = {needed} "
            f"coincidences per {interval_s:g} s interval, saw {seen} ({rate:.4g}/s); {advice}"
        )
