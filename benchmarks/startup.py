"""Start-up fixed cost of ``qhil run bb84`` (issue 12): process start to the first block.

Each repeat runs the real command, ``qhil run bb84 --duration D --json --no-plots`` on the
default profile in a fresh data directory (no stored compensation to reuse: the worst
case; ``--reuse``: one store, as a user's second run), in a child process whose stages are timed from the parent's launch:

    import      the CLI and the job modules imported
    emulators   the world and the emulators started (``EmulatedBench.start``)
    connect     every instrument connected (``Bench.connect``)
    configure   the profile's settings applied (``Bench.configure``)
    mus         the mean photon numbers verified (``verify_mean_photon_numbers``)
    polarization  the fibre compensated (``_calibrate_polarization``)
    first block the key exchange starts (``run_bb84`` entered): the fixed cost
    total       the process has exited

Medians over ``--repeats``. A measurement, not a test: quote it next to the load average.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--duration 0.05] [--reuse] [--json]
                                           [--src DIR]

``--src DIR`` runs another checkout's package (e.g. ``git archive REV src hw_profiles``
unpacked in DIR: ``--src DIR/src``) for a before/after comparison in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

#: The child: the real CLI, with each stage's end stamped (wall clock, as the parent's).
CHILD = r"""
import json, sys, time
t0, out = float(sys.argv[1]), sys.argv[2]
marks = {}
def mark(name):
    marks.setdefault(name, time.time() - t0)
import qhil.cli
import qhil.orchestrator.jobs as jobs
mark("import")
from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.bench import Bench
import qhil.calibration.jobs as cal
def stamped(owner, attr, name):
    f = getattr(owner, attr)
    if hasattr(f, "__code__") and f.__code__.co_flags & 0x80:  # a coroutine function
        async def g(*a, **k):
            try:
                return await f(*a, **k)
            finally:
                mark(name)
    else:
        def g(*a, **k):
            try:
                return f(*a, **k)
            finally:
                mark(name)
    setattr(owner, attr, g)
stamped(EmulatedBench, "start", "emulators")
stamped(Bench, "connect", "connect")
stamped(Bench, "configure", "configure")
stamped(cal, "verify_mean_photon_numbers", "mus")
stamped(jobs, "_calibrate_polarization", "polarization")
run_bb84 = jobs.run_bb84
async def first_block(*a, **k):
    mark("first block")
    return await run_bb84(*a, **k)
jobs.run_bb84 = first_block
try:
    qhil.cli.main(sys.argv[3:])
finally:
    with open(out, "w") as f:
        json.dump(marks, f)
"""

#: A run that takes longer than this is stopped and reported (killed with its process).
RUN_TIMEOUT_S = 300.0

STAGES = ["import", "emulators", "connect", "configure", "mus", "polarization", "first block"]


def one(
    duration_s: float, timed: bool, src: str | None = None, data_dir: str | None = None
) -> dict[str, float]:
    """One run of the command; its stage marks (s from launch), total wall and CPU time.
    ``data_dir``: the run store to use (default: a fresh one, nothing to reuse)."""
    with tempfile.TemporaryDirectory(prefix="qhil-startup-") as tmp:
        args = ["run", "bb84", "--duration", f"{duration_s:g}", "--json", "--no-plots"]
        args += ["--data-dir", data_dir or tmp]
        marks_file = os.path.join(tmp, "marks.json")
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        if timed:
            cmd = [sys.executable, "-c", CHILD, repr(t0), marks_file, *args]
        else:
            cmd = [os.path.join(os.path.dirname(sys.executable), "qhil"), *args]
        env = dict(os.environ)
        if src is not None:  # that checkout's package before the installed (editable) one
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, check=False, env=env, timeout=RUN_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:  # said, not waited for: a hung run is a finding
            raise SystemExit(f"qhil run bb84 still running after {RUN_TIMEOUT_S:g} s") from None
        total = time.time() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        if done.returncode not in (0, 3):  # 3: no key this time; the start-up is the same
            raise SystemExit(f"qhil run bb84 exited {done.returncode}: {done.stderr.strip()}")
        marks: dict[str, float] = {}
        if timed:
            with open(marks_file) as f:
                marks = json.load(f)
    return {**marks, "total": total, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=0.05, help="--duration of each run, s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--src", default=None, help="the qhil package's parent directory to run")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="one data directory for all runs, after a warm-up run: each reuses the stored "
        "polarization compensation (verified, not searched), as a user's second run does",
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qhil-startup-store-") as store:
        data_dir = store if a.reuse else None
        if a.reuse:
            one(a.duration, timed=False, src=a.src, data_dir=data_dir)  # stores a compensation
        runs = [one(a.duration, False, a.src, data_dir) for _ in range(a.repeats)]
        timed = [one(a.duration, True, a.src, data_dir) for _ in range(a.repeats)]
    plain = [r["total"] for r in runs]
    med = {s: statistics.median(r[s] for r in timed if s in r) for s in [*STAGES, "total"]}
    out = {
        "src": a.src,
        "reuse": a.reuse,
        "repeats": a.repeats,
        "duration_s": a.duration,
        "load_average": os.getloadavg()[0],
        "wall_s_median": statistics.median(plain),
        "wall_s": plain,
        "cpu_s_median": statistics.median(r["cpu"] for r in runs),
        "stage_end_s_median": med,
        "fixed_cost_s": [r.get("first block") for r in timed],
    }
    if a.json:
        print(json.dumps(out))
        return
    store = "one data dir, compensation reused" if a.reuse else "fresh data dir"
    print(f"qhil run bb84 --duration {a.duration:g} --json ({store}), {a.repeats} runs,")
    print(f"load average {out['load_average']:.1f}")
    walls = ", ".join(f"{x:.2f}" for x in plain)
    print(f"{'wall time, median':<28} {out['wall_s_median']:6.2f} s  ({walls})")
    print(f"{'CPU time (user+sys), median':<28} {out['cpu_s_median']:6.2f} s")
    print("stages (timed runs; each ends at, from the process spawn):")
    prev = 0.0
    for s in [*STAGES, "total"]:
        print(f"  {s + ' done at':<26} {med[s]:6.2f} s  (+{med[s] - prev:.2f})")
        prev = med[s]


if __name__ == "__main__":
    main()
