"""Checks of SPEC.md for bitlength."""
