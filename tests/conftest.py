"""Settings shared by every test directory.

Hypothesis runs derandomised by default: each property test draws the same examples on
every run and every machine (the seed comes from the test's name), so a red test is
reproducible and a green one stays green until the code changes. The example database is
off for the same reason (a failure found once would otherwise be replayed only on the
machine that found it). ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples, to
search for new counter-examples on purpose.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import settings

settings.register_profile("qhil", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qhil"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most ``slow`` tests run first (each module's tests stay together and
    in their order, so module fixtures are set up once per worker as before). Under
    ``--dist worksteal`` a worker that runs dry takes the tail of another's queue: with the
    long tests at the front, the run ends on short ones and both workers finish together,
    instead of one idling while the other runs a 30-70 s test that happened to come last."""
    slow: Counter[str] = Counter(
        item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("slow")
    )
    items.sort(key=lambda item: -slow[item.nodeid.split("::", 1)[0]])
