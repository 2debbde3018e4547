"""BBM92: entanglement-based QKD on the entangled-photon bench (issue 10).

Passive basis choice at both nodes, coincidences from the shared two-node acquisition
(``experiments.entanglement``), sifting over the authenticated channel (bases only), the
test basis' QBER, then BB84's post-processing (Cascade, verification, privacy
amplification, key confirmation, key store) with the finite-key length of Tomamichel et
al. 2012 (``numerics.qkd.bbm92``). See README.md in this directory.
"""

from qhil.orchestrator.experiments.bbm92.parties import (
    BBM92Aborted,
    make_party,
    run_bbm92,
)
from qhil.orchestrator.experiments.bbm92.result import BBM92Counts, BBM92Result
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings

__all__ = [
    "BBM92Aborted",
    "BBM92Counts",
    "BBM92Result",
    "BBM92Settings",
    "make_party",
    "run_bbm92",
]
