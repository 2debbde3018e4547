"""Errors another client left in an instrument's queue are recorded with the run's identities.

Connecting clears them (and logs a warning); a run record must still show that the
instrument had errors left behind when qhil took it over, next to its identity.
"""

from __future__ import annotations

import socket
from pathlib import Path

from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.profile import load_profile
from qhil.records.store import RunStore

from ._bench_support import write_profile


def _second_client_leaves(address: str, commands: list[bytes]) -> None:
    """Send commands the instrument refuses, then confirm with *OPC? that it handled them."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"".join(c + b"\r" for c in commands) + b"*OPC?\r")
        got = b""
        while not got.endswith(b"\r"):
            part = conn.recv(64)
            assert part, "the emulator hung up"
            got += part
    assert got == b"1\r"


async def test_stale_errors_at_connect_are_recorded_with_the_identities(tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    served = load_profile(str(write_profile(tmp_path / "served")))
    with EmulatedBench(served) as emulated:
        # The lab-style profile the job reads: every instrument at its emulator's address.
        res = emulated.addresses()
        lab = write_profile(
            tmp_path,
            laser=res[("alice", "laser")],
            alice_pc=res[("alice", "polctrl")],
            bob_pc=res[("bob", "polctrl")],
        )
        laser = emulated.endpoints[("alice", "laser")].address
        _second_client_leaves(laser, [b":NOT:A:COMMand 1", b":WAVelength 99999"])

        store = RunStore(tmp_path / "data")
        with store.start_run("test.stale_errors") as run:
            async with open_bench(str(lab)) as bench:
                ids = await bench.identities()
                run.set_identities(ids)
                # Cleared at connect: the queue itself is empty now.
                driver = bench.instrument("alice", "laser")
                assert (await driver.next_error.get()).startswith("0,")
        record = store.get(run.run_id)

    idn = emulated.emulators[("alice", "laser")].describe()["identity"]
    laser_id = record.identities["alice.laser"]
    assert laser_id.startswith(idn + " [at connect: 2 error(s) left by another client")
    assert "-113,'Undefined header'" in laser_id and "-222,'Data out of range'" in laser_id
    # The instruments nobody touched keep their bare identity.
    for key in ("alice.polctrl", "bob.polctrl"):
        assert (
            record.identities[key]
            == emulated.emulators[tuple(key.split("."))].describe()["identity"]
        )
