"""Unit tests: hypothesis without a per-example deadline.

The default 200 ms deadline turns a loaded CI machine's slowness into random failures (seen with
the property tests of slots and priorities while integration tests shared the machine).
"""

import os

from hypothesis import settings

settings.register_profile("unit", deadline=None)
# tools/mutation.sh: no example database either, so a score never depends on the order mutants ran in.
settings.register_profile("mutation", parent=settings.get_profile("unit"), database=None)
settings.load_profile(os.environ.get("WORKPOOLS_HYPOTHESIS_PROFILE", "unit"))
