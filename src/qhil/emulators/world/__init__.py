"""emulators/world."""
