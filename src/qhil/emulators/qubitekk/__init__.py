"""Qubitekk emulators."""
