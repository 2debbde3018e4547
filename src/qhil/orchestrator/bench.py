"""The bench runtime: every instrument of a profile, connected, configured, torn down.

>>> async with open_bench("default") as bench:                     # doctest: +SKIP
...     laser = bench.role("alice", PhotonSource)
...     await laser.set_output(True)

:class:`Bench` builds one driver per profile instrument from the catalogue and
connects them all at once, each with its own deadline. Every failure is
gathered into one :class:`BenchConnectError` (the instruments that did connect
are closed again), so a bench with two unplugged instruments says so in one
message. Experiments ask the bench for roles (``bench.role("bob", Detector)``),
never for models, and never learn whether an instrument is emulated:
:func:`open_bench` starts the emulators and hands the bench their addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qhil.catalogue import entry
from qhil.drivers import roles as roles_module
from qhil.drivers.instrument import Instrument
from qhil.drivers.scpi import ScpiInstrument
from qhil.errors import ConfigError
from qhil.orchestrator.addresses import (
    AddressMap,
    ExtraAddressMap,
    needs_emulators,
    resolve_extra_resources,
    resolve_resources,
)
from qhil.orchestrator.bench_errors import (
    BenchConfigureError,
    BenchConnectError,
    BenchError,
    BenchIdentityError,
    BenchLookupError,
    ConnectTimeoutError,
    InstrumentFailure,
)
from qhil.orchestrator.profile import InstrumentSpec, Profile, load_profile
from qhil.orchestrator.settings import PlannedSetting, plan_settings

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

#: Default deadline for one instrument to open and finish its connect-time setup.
CONNECT_TIMEOUT_S = 10.0
#: How long teardown waits for a connect that overran its deadline to finish by
#: itself (its I/O has its own timeouts) before abandoning it.
STRAGGLER_GRACE_S = 30.0


@dataclass(eq=False)
class BenchInstrument:
    """One instrument of the bench: where it is in the profile, and its driver."""

    node: str
    name: str
    spec: InstrumentSpec
    resource: str
    #: None when the driver could not even be created (e.g. a malformed resource string).
    driver: Instrument | None
    #: Further ports of a multi-port instrument: {port name: resource}.
    extra_resources: dict[str, str] = field(default_factory=dict)
    #: Why the driver could not be created; reported by :meth:`Bench.connect`.
    create_error: Exception | None = None
    connect_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return f"{self.node}.{self.name}"

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def field(self) -> str:
        """Its profile path, ``nodes.<node>.instruments.<name>``."""
        return f"nodes.{self.node}.instruments.{self.name}"

    @property
    def resources(self) -> list[str]:
        """Every resource it is reached at: the main one, then its further ports."""
        return [self.resource, *self.extra_resources.values()]

    def failure(self, error: BaseException) -> InstrumentFailure:
        where = self.resource + "".join(f", {p} {r}" for p, r in self.extra_resources.items())
        return InstrumentFailure(self.key, self.model, where, error)


class Bench:
    """The instruments of a profile, as drivers; connected and configured on request.

    ``addresses`` gives the resource of each instrument whose profile resource is
    ``"emulated"`` (from ``EmulatedBench.addresses()``), ``extra_addresses`` the
    further ports of emulated multi-port instruments
    (``EmulatedBench.extra_addresses()``); the others are reached at their
    profile resources. A bench is used once: connect, configure, use, close
    (``async with`` does the first two and the last).
    """

    def __init__(
        self,
        profile: Profile,
        addresses: AddressMap | None = None,
        extra_addresses: ExtraAddressMap | None = None,
    ) -> None:
        self.profile = profile
        resources = resolve_resources(profile, addresses)
        extras = resolve_extra_resources(profile, extra_addresses)
        # Every profile problem is raised before the first driver (and its session) exists.
        classes = {(n, i): entry(s.model).driver_class() for n, i, s in profile.instruments()}
        port_kws = {
            key: self._port_arguments(cls, *key, extras.get(key, {}))
            for key, cls in classes.items()
        }
        self._members: dict[tuple[str, str], BenchInstrument] = {}
        for node, name, spec in profile.instruments():
            cls, port_kw = classes[(node, name)], port_kws[(node, name)]
            ports = extras.get((node, name), {})
            member = BenchInstrument(node, name, spec, resources[(node, name)], None, ports)
            try:
                member.driver = cls.open(
                    member.resource, name=member.key, timeout_s=spec.timeout_s, **port_kw
                )
            except Exception as exc:  # reported with every other failure at connect
                member.create_error = exc
            self._members[(node, name)] = member
        self._connected = False
        self._closed = False
        #: On an emulated bench, the ``EmulatedBench`` serving it (its ``world`` and
        #: ``emulators``): the emulator truth, for run records and tests only, e.g. a
        #: clock-sync run's error against the true offset. None on a lab bench. Experiments
        #: never read it (that would be asking whether the bench is emulated).
        self.emulator_truth: Any = None

    def _port_arguments(
        self, cls: type[Instrument], node: str, name: str, ports: dict[str, str]
    ) -> dict[str, str]:
        """``{port: resource}`` -> the driver's ``<port>_resource`` keyword arguments."""
        params = inspect.signature(cls.open).parameters
        accepted = sorted(p.removesuffix("_resource") for p in params if p.endswith("_resource"))
        for port in ports:
            if f"{port}_resource" not in params:
                raise ConfigError(
                    self.profile.source or "<profile>",
                    f"nodes.{node}.instruments.{name}.extra_resources.{port}",
                    f"{cls.__name__} has no port {port!r} "
                    f"(its further ports: {', '.join(accepted) or 'none'})",
                )
        return {f"{port}_resource": resource for port, resource in ports.items()}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "not connected"
        return f"Bench({self.profile.bench.name!r}, {len(self._members)} instruments, {state})"

    # --- lookup ---

    @property
    def name(self) -> str:
        return self.profile.bench.name

    @property
    def instruments(self) -> list[BenchInstrument]:
        """Every instrument, in profile order."""
        return list(self._members.values())

    @property
    def connected(self) -> bool:
        return self._connected

    def instrument(self, node: str, name: str) -> Instrument:
        """The driver of instrument ``name`` of ``node``."""
        member = self._members.get((node, name))
        if member is None:
            known = ", ".join(m.key for m in self._members.values())
            raise BenchLookupError(f"bench {self.name!r} has no instrument {node}.{name} ({known})")
        if member.driver is None:
            raise BenchLookupError(f"{member.key} has no driver: {member.create_error}")
        return member.driver

    # A Protocol class is not a concrete ``type[R]`` to mypy, hence ``Callable[..., R]``.
    def role(self, node: str, role: Callable[..., R], name: str | None = None) -> R:
        """The instrument of ``node`` that plays ``role`` (a class from :mod:`qhil.drivers.roles`).

        The catalogue says which roles a model plays. When several instruments of
        the node play the role, ``name`` picks one.
        """
        if not isinstance(role, type):
            raise TypeError(f"role must be a role class from qhil.drivers.roles, not {role!r}")
        if node not in self.profile.nodes:
            raise BenchLookupError(
                f"bench {self.name!r} has no node {node!r} ({', '.join(self.profile.nodes)})"
            )
        members = [m for m in self._members.values() if m.node == node]
        matches = [m for m in members if _plays(m.model, role)]
        if name is not None:
            matches = [m for m in matches if m.name == name]
        if len(matches) != 1:
            have = ", ".join(f"{m.name} ({m.model})" for m in members) or "no instruments"
            which = f" named {name!r}" if name is not None else ""
            problem = "no instrument" if not matches else "several instruments"
            hint = "" if not matches else "; pass name= to choose"
            raise BenchLookupError(
                f"node {node!r} has {problem}{which} playing {role.__name__} (it has: {have}){hint}"
            )
        driver = self.instrument(node, matches[0].name)
        if not isinstance(driver, role):
            raise TypeError(
                f"catalogue says {matches[0].model} plays {role.__name__}, "
                f"but {type(driver).__name__} lacks its methods"
            )
        return driver  # type: ignore[return-value]

    # --- lifecycle ---

    async def connect(self, timeout_s: float | None = None) -> None:
        """Connect every instrument in parallel, each within ``timeout_s``.

        On any failure every instrument is closed again and one
        :class:`BenchConnectError` lists each failure and the instruments that
        were fine.
        """
        if self._closed:
            raise RuntimeError(f"bench {self.name!r} was closed; build a new Bench")
        if self._connected:
            return
        deadline = timeout_s if timeout_s is not None else CONNECT_TIMEOUT_S
        if deadline <= 0:
            raise ValueError(f"timeout_s must be > 0, got {deadline}")
        members = self.instruments
        log.info("bench %r: connecting %d instruments", self.name, len(members))
        try:
            results = await asyncio.gather(
                *(self._connect_one(m, deadline) for m in members), return_exceptions=True
            )
        except BaseException:  # cancelled from outside: leave nothing open
            await self._teardown()
            raise
        failures = [m.failure(r) for m, r in zip(members, results, strict=True) if r is not None]
        if failures:
            fatal = [f.error for f in failures if not isinstance(f.error, Exception)]
            await self._teardown()
            if fatal:  # KeyboardInterrupt, cancellation: not an instrument's failure
                raise fatal[0]
            ok = [m.key for m, r in zip(members, results, strict=True) if r is None]
            raise BenchConnectError(self.name, self.profile.source, failures, ok)
        self._connected = True
        log.info("bench %r: all %d instruments connected", self.name, len(members))

    async def _connect_one(self, member: BenchInstrument, timeout_s: float) -> None:
        if member.driver is None:
            assert member.create_error is not None
            raise member.create_error
        # The connect runs as its own task and is not cancelled at the deadline:
        # a cancelled open would leave its worker thread finishing the open with
        # nobody to close it. Teardown waits for it instead (its I/O has timeouts).
        task = asyncio.create_task(member.driver.connect(), name=f"connect {member.key}")
        member.connect_task = task
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            raise ConnectTimeoutError(member.resource, timeout_s)
        task.result()

    async def configure(self) -> None:
        """Apply every instrument's profile ``settings``.

        All settings are resolved and validated first: an unknown name or a bad
        value raises :class:`~qhil.errors.ConfigError` naming the profile field
        and file before anything is sent. Instruments are configured in
        parallel, each one's settings in profile order; failures are gathered
        into one :class:`BenchConfigureError`.
        """
        self._require_connected()
        source = self.profile.source or "<profile>"
        plans: list[tuple[BenchInstrument, list[PlannedSetting]]] = []
        for m in self.instruments:
            assert m.driver is not None
            plan = plan_settings(m.driver, m.spec.settings, source=source, prefix=m.field)
            if plan:
                plans.append((m, plan))
        await self._on_all([(m, _apply_in_order(plan)) for m, plan in plans], BenchConfigureError)

    async def identities(self) -> dict[str, str]:
        """``{"node.name": identity string}`` of every instrument, for run records.

        An instrument that had errors queued when qhil connected (another client's, cleared
        at connect) has them appended to its identity, so the run record shows them.
        """
        self._require_connected()
        members = self.instruments
        ids = await self._on_all(
            [(m, _identity(m.driver)) for m in members if m.driver is not None],
            BenchIdentityError,
        )
        return {m.key: ids[m.key] for m in members}

    async def close(self) -> None:
        """Close every instrument; safe after a failed connect and when called twice."""
        if self._closed:
            return
        await self._teardown()

    async def __aenter__(self) -> Bench:
        """Connect (default deadline) and configure; closes again if either fails."""
        await self.connect()
        try:
            await self.configure()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- internals ---

    def _require_connected(self) -> None:
        if not self._connected:
            state = "closed" if self._closed else "not connected"
            raise RuntimeError(f"bench {self.name!r} is {state}; await bench.connect() first")

    async def _on_all(
        self,
        jobs: Sequence[tuple[BenchInstrument, Awaitable[T]]],
        error: type[BenchError],
    ) -> dict[str, T]:
        """Run one job per instrument in parallel; gather every failure into ``error``."""
        results = await asyncio.gather(*(job for _, job in jobs), return_exceptions=True)
        out: dict[str, T] = {}
        failures: list[InstrumentFailure] = []
        for (m, _), r in zip(jobs, results, strict=True):
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                failures.append(m.failure(r))
            else:
                out[m.key] = r
        if failures:
            raise error(self.name, self.profile.source, failures, list(out))
        return out

    async def _teardown(self) -> None:
        self._connected = False
        self._closed = True
        await asyncio.gather(*(self._close_one(m) for m in self.instruments))

    async def _close_one(self, member: BenchInstrument) -> None:
        task = member.connect_task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=STRAGGLER_GRACE_S)
            if not done:
                log.warning(
                    "%s: connect still running after teardown grace; cancelling", member.key
                )
                task.cancel()
                await asyncio.wait({task})
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # already reported (or not needed): mark it retrieved
        if member.driver is None:
            return
        try:
            await member.driver.close()
        except Exception as exc:  # teardown goes on; the others must close too
            log.warning("%s: error while closing %s: %s", member.key, member.resource, exc)


async def _apply_in_order(plan: Sequence[PlannedSetting]) -> None:
    for setting in plan:
        log.debug("applying %s", setting.field)
        await setting.apply()


async def _identity(driver: Instrument) -> str:
    return await driver.identity() + stale_errors_note(driver)


def stale_errors_note(driver: Instrument) -> str:
    """`` [at connect: ...]`` listing an SCPI instrument's stale errors (code, text); or ""."""
    stale = driver.stale_errors if isinstance(driver, ScpiInstrument) else ()
    if not stale:
        return ""
    listed = "; ".join(f"{code},{text!r}" for code, text in stale)
    return f" [at connect: {len(stale)} error(s) left by another client, cleared: {listed}]"


def _plays(model: str, role: type) -> bool:
    """Whether the catalogue declares ``model`` to play ``role`` (or a role deriving from it)."""
    for declared in entry(model).roles:
        cls = getattr(roles_module, declared, None)
        if cls is role or (isinstance(cls, type) and role in cls.__mro__):
            return True
    return False


@contextlib.asynccontextmanager
async def open_bench(
    profile: str | Path | Profile | None = None,
    overrides: Sequence[str] = (),
    *,
    connect_timeout_s: float | None = None,
    configure: bool = True,
    mode: str | None = None,
) -> AsyncIterator[Bench]:
    """A connected, configured bench from a profile (name, path or loaded Profile).

    Instruments whose resource is ``"emulated"`` are served by their emulators
    (and the world), started here and stopped on exit; ``mode`` is the world's
    time mode (``"fast"`` or ``"realtime"``). Everything is torn down on exit,
    and also when connecting or configuring fails.
    """
    if isinstance(profile, Profile):
        if overrides:
            raise ValueError("overrides apply when loading a profile; pass a name or path")
        prof = profile
    else:
        prof = load_profile(None if profile is None else str(profile), list(overrides))
    emulated: Any = None
    if needs_emulators(prof):
        from qhil.emulators.bench import EmulatedBench

        emulated = EmulatedBench(prof, mode=mode)
        try:
            await asyncio.to_thread(emulated.start)
        except BaseException:
            await asyncio.to_thread(emulated.stop)
            raise
    try:
        bench = (
            Bench(prof, emulated.addresses(), emulated.extra_addresses())
            if emulated is not None
            else Bench(prof)
        )
        bench.emulator_truth = emulated
        try:
            await bench.connect(connect_timeout_s)
            if configure:
                await bench.configure()
            yield bench
        finally:
            await bench.close()
    finally:
        if emulated is not None:
            await asyncio.to_thread(emulated.stop)
