"""Unit-test settings: pure logic, fakes only at the scheduler seam, real model and VAD."""

from __future__ import annotations

from hypothesis import settings

# Property tests here are pure and fast, but CI boxes with 2 cores also run a node and
# whisper.cpp beside them; a per-example deadline would turn that load into flaky
# failures, so only the example count bounds them.
settings.register_profile("orac-unit", deadline=None)
settings.load_profile("orac-unit")
