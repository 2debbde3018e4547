"""Test support: emulator fixtures and byte-exact protocol helpers."""

from qhil.testing.protocol import ProtocolCase, expected_protocol, run_on_emulator

__all__ = ["ProtocolCase", "expected_protocol", "run_on_emulator"]
