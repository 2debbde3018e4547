"""qhil's own instruments (command sets defined in docs/protocols/)."""
