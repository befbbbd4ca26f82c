"""The one exception that every Gecko decoder raises for malformed input."""


class GeckoFormatError(ValueError):
    """A Gecko stream that does not follow SPEC.md section G.

    Raised for a bad magic, an unknown version, a truncated stream, a field out of range,
    bits that must be zero and are not, and trailing bytes. The message names the field,
    the rule it breaks and the value found.
    """
