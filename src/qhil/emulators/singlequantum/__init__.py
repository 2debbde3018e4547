"""Single Quantum emulators."""
