"""Where each instrument of a profile is reached: its own resource, or its emulator's.

This is the one place outside the emulators that looks at
``resource = "emulated"``: it swaps in the address the emulator was served at.
Drivers, the bench and experiments only ever see a resource string.
"""

from __future__ import annotations

from collections.abc import Mapping

from qhil.errors import ConfigError
from qhil.orchestrator.profile import EMULATED, Profile

#: (node, instrument name) -> resource string, as from ``EmulatedBench.addresses()``.
AddressMap = Mapping[tuple[str, str], str]
#: (node, instrument name) -> {port name: resource}, as from ``EmulatedBench.extra_addresses()``.
ExtraAddressMap = Mapping[tuple[str, str], Mapping[str, str]]


def needs_emulators(profile: Profile) -> bool:
    """True when some instrument is to be served by its emulator."""
    return any(spec.resource == EMULATED for _, _, spec in profile.instruments())


def resolve_resources(
    profile: Profile, emulated: AddressMap | None = None
) -> dict[tuple[str, str], str]:
    """The resource string of every instrument, in profile order.

    ``emulated`` gives the addresses of the instruments whose profile resource
    is ``"emulated"``; it may not name instruments the profile does not have,
    or ones with a real address (that would silently redirect hardware).
    """
    emulated = dict(emulated or {})
    source = profile.source or "<profile>"
    out: dict[tuple[str, str], str] = {}
    for node, name, spec in profile.instruments():
        field = f"nodes.{node}.instruments.{name}.resource"
        if spec.resource == EMULATED:
            address = emulated.pop((node, name), None)
            if address is None:
                raise ConfigError(
                    source,
                    field,
                    "is 'emulated' but no emulator address was given for it "
                    "(use open_bench(), or pass EmulatedBench(profile).start().addresses())",
                )
            out[(node, name)] = address
        else:
            if (node, name) in emulated:
                raise ConfigError(
                    source,
                    field,
                    f"has the real address {spec.resource!r}; an emulator address "
                    f"({emulated[(node, name)]!r}) was given for it too",
                )
            out[(node, name)] = spec.resource
    if emulated:
        unknown = ", ".join(f"{n}.{i}" for n, i in emulated)
        raise ConfigError(
            source, "nodes", f"emulator addresses given for unknown instruments: {unknown}"
        )
    return out


def resolve_extra_resources(
    profile: Profile, emulated: ExtraAddressMap | None = None
) -> dict[tuple[str, str], dict[str, str]]:
    """The further ports of multi-port instruments: {(node, name): {port: resource}}.

    A port given as ``"emulated"`` in ``extra_resources`` is the emulator's; an
    emulated instrument also brings every other port its emulator serves (they
    belong to it, as the count stream belongs to a detector controller).
    """
    emulated = emulated or {}
    source = profile.source or "<profile>"
    out: dict[tuple[str, str], dict[str, str]] = {}
    for node, name, spec in profile.instruments():
        served = dict(emulated.get((node, name), {}))
        ports: dict[str, str] = served if spec.resource == EMULATED else {}
        for port, resource in spec.extra_resources.items():
            if resource != EMULATED:
                ports[port] = resource
            elif port in served:
                ports[port] = served[port]
            else:
                raise ConfigError(
                    source,
                    f"nodes.{node}.instruments.{name}.extra_resources.{port}",
                    "is 'emulated' but the emulator serves no such port"
                    + (f" (it serves: {', '.join(served)})" if served else ""),
                )
        if ports:
            out[(node, name)] = ports
    return out
