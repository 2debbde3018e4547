"""Keysight / Agilent emulators."""
