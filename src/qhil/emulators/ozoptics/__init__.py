"""OZ Optics emulators."""
