"""Shared test configuration: hypothesis profiles.

``ci`` is derandomized so that a CI failure reproduces anywhere; ``dev`` explores
new examples on every run; ``deep`` is for release checks. Select one with
HYPOTHESIS_PROFILE; CI=true selects ``ci``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=100, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile(
    "deep", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
