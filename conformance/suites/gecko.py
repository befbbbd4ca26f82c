"""Checks of SPEC.md for gecko."""
