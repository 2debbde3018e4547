"""Thorlabs emulators."""
