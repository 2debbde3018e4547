"""Polarization compensation across two nodes: Alice's reference light over the channel.

When Alice and Bob run as separate processes (``qhil run bb84 --party ...``) each
opens only its own node's instruments: Alice's pattern generator, Bob's tagger and
polarization controller. The search is the one of :mod:`qhil.calibration.polarization`
(:func:`~qhil.calibration.polarization.compensate_polarization`); only where its
reference light comes from differs. Bob's :class:`RemoteReference` asks Alice for each
reference state over the authenticated classical channel and counts it on his own
tagger; Alice (:func:`serve_remote_reference`) loads a fresh constant pattern of that
state on her generator and says when it is live.

Messages (kind ``polcal.<Name>``; every one authenticated by the channel)::

    B->A Plan       version; compensate or not; the reference's pattern length,
                    intensity index and rate, and the search's max_acquisitions
                    (Alice checks they are hers; she caps Bob's requests with it)
    A->B Ready      her generator's output is on (or Failed)
    B->A Request    step, reference state (H, V, D, A)
    A->B Live       step, state, pattern length uploaded (or Failed)
    B->A Measured   step, state, Bob's H, V, D, A counts and gate (for Alice's record)
    ...             a Request, Live, Measured per reference block of the search
    B->A Done       the calibration's results (scalars), or Failed
    either way: Failed (detail): the sender stopped; the receiver stops too

Alice switches her output off when Bob is done, failed, or the channel fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from qhil.calibration.errors import CalibrationError
from qhil.calibration.polarization import (
    PolarizationCalibration,
    StepHook,
    compensate_polarization,
    polarization_options,
)
from qhil.calibration.reference import DETECTORS, ReferenceSource
from qhil.calibration.settings import PolarizationSettings
from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger

log = logging.getLogger(__name__)

VERSION = 1
KIND_PREFIX = "polcal."
#: Settings that describe the reference light (Alice's side); the rest drive Bob's search.
REFERENCE_FIELDS = ("channel_map", "rep_rate_hz", "pattern_length", "intensity_index")

Scalar = bool | int | float | str
#: Alice serves at most this many reference blocks per counting gate Bob may use (one
#: each, in fact): a peer that never ends cannot keep her transmitter busy forever.
MAX_REQUESTS_PER_GATE = 2


class Channel(Protocol):
    """An opened authenticated channel (``AuthenticatedChannel``)."""

    async def send(self, kind: str, payload: Mapping[str, Any] | None = None) -> int: ...

    async def recv(self, kind: str | None = None, *, timeout_s: float | None = None) -> Any: ...


# --- messages ---


@dataclass(frozen=True)
class PolcalMessage:
    """Base of the compensation's messages; fields declare their wire kind."""


@dataclass(frozen=True)
class Plan(PolcalMessage):
    version: int = field(metadata={"wire": int})
    enabled: bool = field(metadata={"wire": bool})
    pattern_length: int = field(metadata={"wire": int})
    intensity_index: int = field(metadata={"wire": int})
    rep_rate_hz: float = field(metadata={"wire": float})
    max_acquisitions: int = field(metadata={"wire": int})


@dataclass(frozen=True)
class Ready(PolcalMessage):
    pass


@dataclass(frozen=True)
class Request(PolcalMessage):
    step: int = field(metadata={"wire": int})
    state: str = field(metadata={"wire": "state"})


@dataclass(frozen=True)
class Live(PolcalMessage):
    step: int = field(metadata={"wire": int})
    state: str = field(metadata={"wire": "state"})
    length: int = field(metadata={"wire": int})


@dataclass(frozen=True)
class Measured(PolcalMessage):
    step: int = field(metadata={"wire": int})
    state: str = field(metadata={"wire": "state"})
    counts: tuple[int, int, int, int] = field(metadata={"wire": "counts"})
    integration_s: float = field(metadata={"wire": float})


@dataclass(frozen=True)
class Done(PolcalMessage):
    results: dict[str, Scalar] = field(metadata={"wire": "scalars"})


@dataclass(frozen=True)
class Failed(PolcalMessage):
    detail: str = field(metadata={"wire": str})


_TYPES: dict[str, type[PolcalMessage]] = {
    KIND_PREFIX + cls.__name__: cls for cls in (Plan, Ready, Request, Live, Measured, Done, Failed)
}
M = TypeVar("M", bound=PolcalMessage)


def to_payload(msg: PolcalMessage) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {}
    for f in fields(msg):
        value = getattr(msg, f.name)
        payload[f.name] = list(value) if f.metadata["wire"] == "counts" else value
    return KIND_PREFIX + type(msg).__name__, payload


def _check(cls: type[PolcalMessage], name: str, wire: Any, v: Any) -> Any:
    bad = CalibrationError(f"polarization compensation: {cls.__name__}.{name} is malformed")
    if wire is int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad
    elif wire is float:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise bad
        v = float(v)
    elif wire in (bool, str):
        if not isinstance(v, wire):
            raise bad
    elif wire == "state":
        if v not in DETECTORS:
            raise bad
    elif wire == "counts":
        ok = isinstance(v, list) and len(v) == len(DETECTORS)
        if not ok or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v):
            raise bad
        v = tuple(v)
    elif wire == "scalars":
        ok = isinstance(v, dict)
        if not ok or not all(isinstance(k, str) and isinstance(x, Scalar) for k, x in v.items()):
            raise bad
    return v


def from_payload(kind: str, payload: Any) -> PolcalMessage:
    """Check and rebuild a message; :class:`CalibrationError` naming what is wrong."""
    cls = _TYPES.get(kind)
    if cls is None:
        raise CalibrationError(
            f"polarization compensation: unexpected message {kind!r} from the peer "
            f"(does it compensate too? experiments.bb84.calibrate_polarization must agree)"
        )
    spec = {f.name: f.metadata["wire"] for f in fields(cls)}
    if not isinstance(payload, dict) or set(payload) != set(spec):
        raise CalibrationError(f"polarization compensation: {cls.__name__} has the wrong fields")
    return cls(**{n: _check(cls, n, w, payload[n]) for n, w in spec.items()})


async def _send(channel: Channel, msg: PolcalMessage) -> None:
    await channel.send(*to_payload(msg))


async def _expect(channel: Channel, timeout_s: float, *types: type[M]) -> M | Failed:
    """The next message: one of ``types`` or the peer's :class:`Failed`."""
    got = await channel.recv(timeout_s=timeout_s)
    msg = from_payload(got.kind, got.payload)
    if not isinstance(msg, (*types, Failed)):
        names = " or ".join(t.__name__ for t in types)
        raise CalibrationError(
            f"polarization compensation: expected {names}, got {type(msg).__name__}"
        )
    return cast("M | Failed", msg)


class PeerFailed(CalibrationError):
    """The other party stopped the compensation (its detail in the message)."""


async def _tell_failed(channel: Channel, exc: BaseException) -> None:
    """Best effort: the peer stops too (never raises; the first error is what matters)."""
    try:
        await _send(channel, Failed(str(exc) or type(exc).__name__))
    except Exception as err:
        log.debug("polarization compensation: could not tell the peer: %s", err)


class _Elsewhere:
    """An instrument of the other node: this process never drives it."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise CalibrationError(f"{self._what} belongs to the other node ({name} not available)")


# --- Bob ---


class RemoteReference:
    """Bob's reference light: Alice loads each state on request; Bob's tagger counts.

    A :class:`~qhil.calibration.polarization.ReferenceLight` for
    :func:`~qhil.calibration.polarization.compensate_polarization`.
    """

    def __init__(
        self,
        channel: Channel,
        tagger: TimeTagger,
        settings: PolarizationSettings,
        timeout_s: float,
    ) -> None:
        self._channel = channel
        self._timeout_s = timeout_s
        # Bob's gates and counts as in one process; the generator is Alice's.
        self._meter = ReferenceSource(
            cast(PatternGenerator, _Elsewhere("Alice's pattern generator")),
            tagger,
            {str(k): c for k, c in settings.channel_map.items()},
            settings.rep_rate_hz,
            pattern_length=settings.pattern_length,
            intensity_index=settings.intensity_index,
        )
        self._step = 0
        self._state = ""
        self.uploads = 0

    @property
    def settle_gates(self) -> int:
        return self._meter.settle_gates

    async def load(self, state: str) -> int:
        self._step += 1
        await _send(self._channel, Request(self._step, state))
        live = await _expect(self._channel, self._timeout_s, Live)
        if isinstance(live, Failed):
            raise PeerFailed(f"Alice could not send the {state} reference: {live.detail}")
        if live.step != self._step or live.state != state:
            raise CalibrationError(
                f"polarization compensation: Alice made {live.state} live for step {live.step}, "
                f"Bob asked for {state} (step {self._step})"
            )
        self._state = state
        self.uploads += 1
        return live.length

    async def settle(self, settle_s: float) -> None:
        await self._meter.settle(settle_s)

    async def count(self, integration_s: float) -> tuple[int, int, int, int]:
        counts = await self._meter.count(integration_s)
        await _send(self._channel, Measured(self._step, self._state, counts, integration_s))
        return counts


def _plan(settings: PolarizationSettings | None) -> Plan:
    if settings is None:
        return Plan(VERSION, False, 0, 0, 0.0, 0)
    return Plan(
        VERSION,
        True,
        settings.pattern_length,
        settings.intensity_index,
        settings.rep_rate_hz,
        settings.max_acquisitions,
    )


async def compensate_with_remote_reference(
    channel: Channel,
    tagger: TimeTagger,
    controller: PolarizationController | None,
    settings: PolarizationSettings | None,
    *,
    timeout_s: float,
    on_step: StepHook | None = None,
) -> PolarizationCalibration | None:
    """Bob's side: compensate his controller with Alice's reference light (None: not asked).

    ``settings`` None tells Alice that no compensation is done (she must agree; then
    ``controller`` may be None).
    Raises :class:`CalibrationError` (no light, no response, Alice failed, settings
    differ: Alice is told) and lets the channel's errors through.
    """
    opts = None
    if settings is not None:
        if controller is None:
            raise ValueError("compensating needs Bob's polarization controller")
        kw = {k: v for k, v in settings.routine_kwargs().items() if k not in REFERENCE_FIELDS}
        opts = polarization_options(int(controller.channels), **kw)
    await _send(channel, _plan(settings))
    ready = await _expect(channel, timeout_s, Ready)
    if isinstance(ready, Failed):
        raise PeerFailed(f"Alice refused the polarization compensation: {ready.detail}")
    if settings is None or opts is None or controller is None:
        return None
    light = RemoteReference(channel, tagger, settings, timeout_s)
    try:
        result = await compensate_polarization(light, controller, opts, on_step=on_step)
    except PeerFailed:
        raise
    except Exception as exc:
        await _tell_failed(channel, exc)
        raise
    results = {k: v for k, v in result.to_results().items() if v is not None}
    await _send(channel, Done(results))
    return result


# --- Alice ---


@dataclass(frozen=True)
class RemoteReferenceReport:
    """What Alice saw of Bob's compensation (for her run record)."""

    references: int  # reference patterns she made live
    measured: np.ndarray = field(repr=False)  # step, state (0..3 = H, V, D, A), 4 counts
    results: dict[str, Scalar]  # Bob's results, as he sent them

    def to_results(self) -> dict[str, Scalar]:
        return {**self.results, "references_served": self.references}


def _differences(plan: Plan, settings: PolarizationSettings) -> list[str]:
    mine = _plan(settings)
    return [
        f"{name} {getattr(plan, name)!r} (Alice: {getattr(mine, name)!r})"
        for name in (
            "version",
            "pattern_length",
            "intensity_index",
            "rep_rate_hz",
            "max_acquisitions",
        )
        if getattr(plan, name) != getattr(mine, name)
    ]


async def serve_remote_reference(
    channel: Channel,
    generator: PatternGenerator,
    settings: PolarizationSettings | None,
    *,
    timeout_s: float,
    rng: np.random.Generator | None = None,
) -> RemoteReferenceReport | None:
    """Alice's side: make each reference state Bob asks for live (None: not asked).

    ``settings`` None: Alice does not compensate, and refuses a Bob who does.
    Raises :class:`CalibrationError` when Bob fails or settings differ (Bob is told),
    and lets the channel's and the generator's errors through after telling Bob.
    """
    plan = await _expect(channel, timeout_s, Plan)
    if isinstance(plan, Failed):
        raise PeerFailed(f"Bob stopped before the polarization compensation: {plan.detail}")
    problem = None
    differences = [] if settings is None else _differences(plan, settings)
    if plan.enabled != (settings is not None):
        problem = (
            f"experiments.bb84.calibrate_polarization differs: Bob {plan.enabled}, "
            f"Alice {settings is not None}"
        )
    elif differences:
        problem = "reference settings differ: " + ", ".join(differences)
    if problem is not None:
        exc = CalibrationError(f"polarization compensation: {problem}")
        await _tell_failed(channel, exc)
        raise exc
    if settings is None:
        await _send(channel, Ready())
        return None
    source = ReferenceSource(
        generator,
        cast(TimeTagger, _Elsewhere("Bob's tagger")),
        {str(k): c for k, c in settings.channel_map.items()},
        settings.rep_rate_hz,
        pattern_length=settings.pattern_length,
        intensity_index=settings.intensity_index,
        rng=rng,
    )
    rows: list[tuple[int, ...]] = []
    try:
        await generator.set_output(True)
        await _send(channel, Ready())
        while True:
            msg = await _expect(channel, timeout_s, Request, Measured, Done)
            if isinstance(msg, Request):
                if source.uploads >= MAX_REQUESTS_PER_GATE * settings.max_acquisitions:
                    raise CalibrationError(
                        f"polarization compensation: Bob asked for more than "
                        f"{source.uploads} reference blocks (max_acquisitions is "
                        f"{settings.max_acquisitions})"
                    )
                length = await source.load(msg.state)
                await _send(channel, Live(msg.step, msg.state, length))
            elif isinstance(msg, Measured):
                rows.append((msg.step, DETECTORS.index(msg.state), *msg.counts))
            elif isinstance(msg, Done):
                measured = np.asarray(rows, dtype=np.int64).reshape(-1, 2 + len(DETECTORS))
                return RemoteReferenceReport(source.uploads, measured, msg.results)
            elif isinstance(msg, Failed):
                raise PeerFailed(f"Bob's polarization compensation failed: {msg.detail}")
    except PeerFailed:
        raise
    except Exception as exc:
        await _tell_failed(channel, exc)
        raise
    finally:
        try:
            await generator.set_output(False)
        except Exception as exc:
            log.warning("polarization: could not switch the pattern generator off: %s", exc)
