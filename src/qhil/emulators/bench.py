"""Bring up the emulated part of a bench: the world and one emulator per instrument.

Every instrument whose profile resource is ``"emulated"`` is served by its
emulator (TCP or pty) from one :class:`EmulatorHost`, wired to its world
component. What comes back is only addresses: the orchestrator and drivers
connect to them exactly as to hardware.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qhil.catalogue import entry
from qhil.emulators.server import EmulatorHost, Endpoint
from qhil.errors import ConfigError
from qhil.orchestrator.profile import EMULATED, InstrumentSpec, Profile

log = logging.getLogger(__name__)

#: Prefix of the emulator host's temporary directory (pty links), and its owner's pid file.
EMULATOR_DIR_PREFIX = "qhil-emu-"
OWNER_FILE = "owner.pid"


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
        """Serve every emulated instrument; on any failure stop what was started, then raise.

        First removes the temporary directories that benches of dead processes left
        behind (kill -9 skips their cleanup), then marks this one with our pid.
        """
        remove_stale_emulator_dirs()
        self.host.start()
        _mark_owner(Path(self.host._dir))  # the host makes the directory; we say whose it is
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


def _mark_owner(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="ascii")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _is_stale(directory: Path) -> bool:
    """Its owning process is gone (pid file), or, without one, every pty link it holds
    points at a terminal that no longer exists (its server died with it)."""
    try:
        pid = int((directory / OWNER_FILE).read_text(encoding="ascii").strip())
    except FileNotFoundError:
        entries = list(directory.iterdir())
        return bool(entries) and all(e.is_symlink() and not e.exists() for e in entries)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and not _alive(pid)


def remove_stale_emulator_dirs(tmp: str | Path | None = None) -> list[Path]:
    """Remove ``qhil-emu-*`` directories in the temp dir whose owner is gone; returns them."""
    base = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = sorted(base.glob(f"{EMULATOR_DIR_PREFIX}*"))
    except OSError:
        return removed
    for d in candidates:
        try:
            if (
                d.is_dir()
                and not d.is_symlink()
                and d.stat().st_uid == os.getuid()
                and _is_stale(d)
            ):
                shutil.rmtree(d)
                removed.append(d)
        except OSError:
            continue  # another process removed it first
    if removed:
        log.info("removed %d stale emulator directories: %s", len(removed), removed)
    return removed
