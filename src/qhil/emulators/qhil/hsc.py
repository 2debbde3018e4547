"""Emulated qhil HSC-1 heralding station (protocol: docs/protocols/qhil-hsc.md).

Backed by a ``heralding_station`` component of the world
(`world.quantum.network.HeraldingStation`) between two ``quantum_memory`` components,
on the world's simulated clock. Not wired to a component, it runs a small world of its
own: two 4-mode memories 1 km either side of it (``DEFAULT_LINK``).

``HERald:ENTangle n`` decides the whole run at once (one geometric draw: the number of
attempts to the first herald) and reserves the pair's modes, without moving time: the
attempts run from the moment it was commanded. ``HERald:RESult?`` waits for them to end
(``attempts x period`` after that moment; in fast mode at once, moving the clock, in
realtime mode on the wall clock); the pair is in the memories from then on, whoever looks
first. In fast mode, stations commanded with nothing else happening on the bench in
between (no memory touched, the clock moved only by result waits) start at the same
emulated moment, whichever result is read first (`Network.round_start_ps`): two links
heralding at once cover the same emulated interval, as on a real repeater.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qhil.drivers.qhil.hsc import HSC, MAX_ATTEMPTS
from qhil.emulators.base import Raw, on
from qhil.emulators.qhil.qmc import PS, nr3
from qhil.emulators.scpi import DATA_OUT_OF_RANGE, ScpiEmulator, ScpiError
from qhil.emulators.world.clock import SimClock, seconds_to_ps

NO_FREE_MODE = 201
MEMORY_OFF = 202
#: The station's own small bench when it is not wired to a world component.
DEFAULT_LINK: dict[str, Any] = {
    "mode": "fast",
    "nodes": {
        "a": {
            "components": {
                "memory": {"type": "quantum_memory", "n_modes": 4, "t1_s": 10.0, "t2_s": 1.0},
                "station": {
                    "type": "heralding_station",
                    "memory_a": "a.memory",
                    "memory_b": "b.memory",
                    "length_a_km": 1.0,
                    "length_b_km": 1.0,
                    "emission_efficiency_a": 0.3,
                    "emission_efficiency_b": 0.3,
                    "detection_efficiency": 0.9,
                    "visibility": 0.9,
                    "cycle_time_s": 10e-6,
                },
            }
        },
        "b": {
            "components": {
                "memory": {"type": "quantum_memory", "n_modes": 4, "t1_s": 10.0, "t2_s": 1.0}
            }
        },
    },
}
_NO_RESULT = "0,0,NONE,-1,-1,+0.000000000E+00"


class HSCEmulator(ScpiEmulator):
    driver = HSC
    identity: ClassVar[tuple[str, str, str, str]] = ("QHIL", "HSC-1", "HSC00001", "1.0")
    default_port = 5032
    input_terminators = b"\n"

    def __init__(self, **kw: Any) -> None:
        self._own_world: Any = None
        super().__init__(**kw)

    # --- what the station is attached to ---

    @property
    def _world(self) -> Any:
        if self.world is not None and self.component:
            return self.world
        if self._own_world is None:
            from qhil.emulators.world import World, load_world_config

            cfg = load_world_config(DEFAULT_LINK, "HSCEmulator.DEFAULT_LINK")
            self._own_world = World(cfg, seed=self.seed)
        return self._own_world

    @property
    def station(self) -> Any:
        name = self.component if self.world is not None and self.component else "a.station"
        return self._world.station(name)

    @property
    def clock(self) -> SimClock:
        clock: SimClock = self._world.clock
        return clock

    def power_on_state(self) -> None:
        super().power_on_state()
        self.result = _NO_RESULT
        # the running attempts (and when they end, ps) until RESult? reports them; *RST
        # forgets the report, the attempts still land in the memories
        self._run: tuple[Any, int] | None = None
        self._free_at_ps = 0  # when the station's last run ended

    # --- commands ---

    @on("entangle_start")
    async def _entangle(self, count: int) -> None:
        from qhil.emulators.world.quantum.network import StationError

        if not 1 <= count <= MAX_ATTEMPTS:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        if self._run is not None:  # the station is still busy: the new run follows it
            await self._finish()
        self.result = _NO_RESULT
        station = self.station
        now_ps = self.clock.now_ps
        start_ps = now_ps
        if self.clock.mode == "fast":
            # virtual time: stations commanded together start together (whichever result
            # is read first), and a station's runs follow one another
            start_ps = max(station.network.round_start_ps(now_ps), self._free_at_ps)
        try:
            run = station.begin(count, now_ps * PS, start_ps * PS)
        except StationError as exc:
            code, what = (
                (NO_FREE_MODE, "No free mode")
                if exc.reason == "no_free_mode"
                else (MEMORY_OFF, "Memory off")
            )
            raise ScpiError(code, f"{what};{exc.memory}") from None
        self._run = (run, start_ps + seconds_to_ps(run.elapsed_s))

    async def _finish(self) -> None:
        """Wait for the running attempts to end (moving time in fast mode) and keep their
        result."""
        assert self._run is not None
        run, done_ps = self._run
        await self.clock.wait_until_ps(done_ps)
        self._run = None
        self._free_at_ps = done_ps
        self.station.network.round_waited(self.clock.now_ps)
        run = self.station.complete(run, self.clock.now_ps * PS)
        bell = "NONE" if run.bell is None else run.bell.upper()
        mode_a = -1 if run.mode_a is None else run.mode_a
        mode_b = -1 if run.mode_b is None else run.mode_b
        self.result = (
            f"{int(run.success)},{run.attempts},{bell},{mode_a},{mode_b},{nr3(run.elapsed_s)}"
        )

    @on("result.get")
    async def _result(self) -> Raw:
        if self._run is not None:
            await self._finish()
        return Raw(self.result)

    @on("attempt_period_s.get")
    def _period(self) -> Raw:
        return nr3(self.station.period_s)

    @on("success_probability.get")
    def _probability(self) -> Raw:
        return nr3(self.station.success_probability)

    @on("ends.get")
    def _ends(self) -> Raw:
        st = self.station
        return Raw(f"{st.memory_a},{st.memory_b}")


__all__ = ["DEFAULT_LINK", "HSCEmulator"]
