"""Qubitekk instruments."""
