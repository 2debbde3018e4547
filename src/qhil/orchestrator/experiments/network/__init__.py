"""Entanglement requests over the repeater bench's links, and ``qhil ping`` (README.md)."""

from qhil.orchestrator.experiments.network.errors import (
    EntanglementRequestError,
    ExpiredByCutoff,
    FidelityUnreachable,
    NoResources,
    RequestTimeout,
)
from qhil.orchestrator.experiments.network.link_layer import (
    DeliveredPair,
    EntanglementRequest,
    LinkEstimate,
    LinkPair,
    Network,
    NetworkEstimates,
    NodeEstimate,
    Purifier,
    open_network,
)
from qhil.orchestrator.experiments.network.settings import NetworkSettings, PingSettings

__all__ = [
    "DeliveredPair",
    "EntanglementRequest",
    "EntanglementRequestError",
    "ExpiredByCutoff",
    "FidelityUnreachable",
    "LinkEstimate",
    "LinkPair",
    "Network",
    "NetworkEstimates",
    "NetworkSettings",
    "NoResources",
    "NodeEstimate",
    "PingSettings",
    "Purifier",
    "RequestTimeout",
    "open_network",
]
