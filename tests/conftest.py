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

from hypothesis import settings

settings.register_profile("qhil", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qhil"))
