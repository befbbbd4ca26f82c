"""Conformance suites that check a backend against SPEC.md bit for bit."""
