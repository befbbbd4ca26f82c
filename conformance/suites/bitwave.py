"""Checks of SPEC.md for bitwave."""
