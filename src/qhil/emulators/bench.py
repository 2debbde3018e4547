"""Bring up the emulated part of a bench: the world and one emulator per instrument.

Every instrument whose profile resource is ``"emulated"`` is served by its
emulator (TCP or pty) from one :class:`EmulatorHost`, wired to its world
component. What comes back is only addresses: the orchestrator and drivers
connect to them exactly as to hardware.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from qhil.catalogue import entry
from qhil.emulators.server import EmulatorHost, Endpoint
from qhil.errors import ConfigError
from qhil.orchestrator.profile import EMULATED, InstrumentSpec, Profile

log = logging.getLogger(__name__)


class EmulatedBench:
    """The world and emulators of a profile, served until closed."""

    def __init__(
        self, profile: Profile, *, mode: str | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.profile = profile
        self.world: Any = None
        if profile.world is not None:
            import importlib

            from qhil.emulators.world.config import load_world_config

            World = importlib.import_module("qhil.emulators.world").World

            cfg = load_world_config(profile.world, profile.source)
            kw: dict[str, Any] = {"seed": profile.bench.seed}
            if mode is not None:
                kw["mode"] = mode
            self.world = World(cfg, **kw)
        self.host = EmulatorHost(host)
        self.emulators: dict[tuple[str, str], Any] = {}
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.extra_endpoints: dict[tuple[str, str], dict[str, Endpoint]] = {}

    def start(self) -> EmulatedBench:
        """Serve every emulated instrument; on any failure stop what was started, then raise."""
        self.host.start()
        try:
            for i, (node, name, spec) in enumerate(self.profile.instruments()):
                if spec.resource != EMULATED:
                    continue
                emu = self._emulator(i, node, name, spec)
                self.emulators[(node, name)] = emu
                self.endpoints[(node, name)] = self.host.add(emu)
                # Instruments with several ports (a control port and a data stream) serve each.
                extras: dict[str, Any] = getattr(emu, "extra_endpoints", dict)()
                self.extra_endpoints[(node, name)] = {
                    k: self.host.add(v) for k, v in extras.items()
                }
        except BaseException:
            self.stop()
            self.emulators.clear()
            self.endpoints.clear()
            self.extra_endpoints.clear()
            raise
        return self

    def _emulator(self, i: int, node: str, name: str, spec: InstrumentSpec) -> Any:
        """The instrument's emulator; a bad option or component is the profile's error."""
        from qhil.emulators.world.errors import WorldError  # heavy package: only when emulating

        cls = entry(spec.model).emulator_class()
        where = f"nodes.{node}.instruments.{name}"
        accepted = _keyword_options(cls) - {"name", "seed", "world", "component"}
        unknown = sorted(set(spec.emulator) - accepted)
        if unknown:
            raise ConfigError(
                self.profile.source,
                f"{where}.emulator",
                f"unknown option(s) {', '.join(map(repr, unknown))} for {cls.__name__} "
                f"(it takes: {', '.join(sorted(accepted)) or 'none'})",
            )
        try:
            return cls(
                name=f"{node}.{name}",
                seed=self.profile.bench.seed + 1000 * (i + 1),
                world=self.world,
                component=spec.component or "",
                **spec.emulator,
            )
        except WorldError as exc:
            raise ConfigError(self.profile.source, f"{where}.component", str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(self.profile.source, f"{where}.emulator", str(exc)) from None

    def addresses(self) -> dict[tuple[str, str], str]:
        return {k: ep.resource for k, ep in self.endpoints.items()}

    def extra_addresses(self) -> dict[tuple[str, str], dict[str, str]]:
        """Further ports of multi-port instruments: {(node, name): {port name: resource}}."""
        return {
            k: {n: ep.resource for n, ep in v.items()} for k, v in self.extra_endpoints.items() if v
        }

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for (node, name), ep in self.endpoints.items():
            d: dict[str, Any] = dict(ep.as_dict())
            extras = self.extra_endpoints.get((node, name))
            if extras:
                d["extra_resources"] = {k: e.resource for k, e in extras.items()}
            d.update(
                node=node,
                instrument=name,
                catalogue_model=self.profile.nodes[node].instruments[name].model,
            )
            out.append(d)
        return out

    def addressed_profile(self) -> dict[str, Any]:
        """The profile as data, with every emulated instrument at its emulator's address.

        Saved as TOML, it is a "lab" profile for this running bench: processes that
        load it (Alice and Bob on different hosts, say) connect to the emulators as
        to hardware, and start no emulators of their own.
        """
        data = self.profile.model_dump(mode="json", exclude={"source"}, exclude_none=True)
        data.pop("world", None)
        for (node, name), ep in self.endpoints.items():
            inst = data["nodes"][node]["instruments"][name]
            inst["resource"] = ep.resource
            extras = self.extra_endpoints.get((node, name))
            if extras:
                inst["extra_resources"] = {k: e.resource for k, e in extras.items()}
            inst.pop("component", None)
            inst.pop("emulator", None)
        return data

    def stop(self) -> None:
        self.host.stop()

    def __enter__(self) -> EmulatedBench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _keyword_options(cls: type) -> set[str]:
    """Keyword arguments an emulator class accepts, through its ``**kw`` chain of __init__s."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this __init__ passes nothing further up
    return names
