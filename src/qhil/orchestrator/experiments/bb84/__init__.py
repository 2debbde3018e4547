"""Decoy-state BB84 between two parties over an authenticated classical channel.

Alice drives a :class:`~qhil.drivers.roles.PatternGenerator`, Bob reads a
:class:`~qhil.drivers.roles.TimeTagger`; everything else goes through the
channel. See README.md in this directory for the protocol, the message flow,
the estimates and the abort rules.

Public API
----------
* :class:`BB84Settings` (``[experiments.bb84]`` of a profile; ``from_profile``).
* :func:`run_bb84` (both parties in one process) -> :class:`BB84Result`, or
  :func:`run_alice` / :func:`run_bob` (one party each) -> :class:`PartyResult`.
* :class:`BB84Aborted` (``.reason``: :class:`AbortReason`, ``.result``).
* :class:`BB84Progress` events for a progress hook; raw per-block rows for a data
  hook (``run.append``); :func:`bench_roles` picks the roles from a ``Bench``.
"""

from qhil.orchestrator.experiments.bb84.alice import run_alice
from qhil.orchestrator.experiments.bb84.bob import run_bob
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted, ProtocolViolation
from qhil.orchestrator.experiments.bb84.link import MessageChannel
from qhil.orchestrator.experiments.bb84.party import DataHook, ProgressHook
from qhil.orchestrator.experiments.bb84.result import BB84Progress, BB84Result, PartyResult
from qhil.orchestrator.experiments.bb84.runner import bench_roles, run_bb84
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.statistics import BB84Statistics

__all__ = [
    "AbortReason",
    "BB84Aborted",
    "BB84Progress",
    "BB84Result",
    "BB84Settings",
    "BB84Statistics",
    "DataHook",
    "MessageChannel",
    "PartyResult",
    "ProgressHook",
    "ProtocolViolation",
    "bench_roles",
    "run_alice",
    "run_bb84",
    "run_bob",
]
