"""pytest plugin: fixtures that bring up emulated instruments for a user's own CI."""
