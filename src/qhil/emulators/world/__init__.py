"""The emulated bench's physics: one model shared by every instrument emulator.

See README.md in this folder for the API contract.
"""

from .clock import NodeClock, SimClock
from .config import WorldConfig, load_world_config, load_world_file
from .detector import Detector
from .errors import UnknownComponentError, WorldError, WorldSettingError, WorldTimeError
from .link import Eavesdropper, Link
from .optics import Attenuator, PolarizationAnalyzer, PolarizationController, Waveplate
from .sources import CWLaser, SPDCSource, WeakCoherentTransmitter
from .tagger import TagBlock, TagReader, TimeTagger
from .world import ChannelRef, CountBlock, CountReader, Node, World

__all__ = [
    "Attenuator",
    "CWLaser",
    "ChannelRef",
    "CountBlock",
    "CountReader",
    "Detector",
    "Eavesdropper",
    "Link",
    "Node",
    "NodeClock",
    "PolarizationAnalyzer",
    "PolarizationController",
    "SPDCSource",
    "SimClock",
    "TagBlock",
    "TagReader",
    "TimeTagger",
    "UnknownComponentError",
    "Waveplate",
    "WeakCoherentTransmitter",
    "World",
    "WorldConfig",
    "WorldError",
    "WorldSettingError",
    "WorldTimeError",
    "load_world_config",
    "load_world_file",
]
