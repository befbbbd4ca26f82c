"""The conformance suites; importing this package registers every check."""

from conformance.suites import bitlength, bitwave, containers, gecko  # noqa: F401
