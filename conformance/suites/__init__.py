"""The conformance suites; importing this package registers every check."""

from conformance.suites import arrays, bitlength, bitwave, containers, gecko  # noqa: F401
