"""Golden vectors of SPEC.md section C: quantize, encode and decode, with oracle outputs."""

from conformance import oracle
from conformance.strategies import DROPPED_PATTERNS, fp32_bits_of
from reference.container import PRESETS, Container

DESCRIPTION = (
    "kind 'quantize': container (its eight fields), anchor (null, int or 'max'), x (FP32 bits), "
    "noise (uint32, stochastic only, else null), y (FP32 bits of quantize(x)), and x_error: "
    "inputs that must each raise ValueError when passed alone. kind 'codes': container, "
    "anchor, codes (every code of the container), y (FP32 bits of decode, or 'error' for codes "
    "decode rejects); encode of each non-NaN member y gives its code back, and of a NaN the "
    "canonical NaN code with its sign (C19)."
)
FIELDS = ("exponent_bits", "mantissa_bits", "bias", "specials", "subnormals", "saturate",
          "rounding", "base")
SPECIAL_BITS = [0x0000_0000, 0x0000_0001, 0x007F_FFFF, 0x0080_0000, 0x7F7F_FFFF, 0x7F80_0000,
                0x7F80_0001, 0x7FC0_0000, 0x7FFF_FFFF, 0x3F7F_FFFF, 0x3F80_0000, 0x4B7F_FFFF]


def hard_inputs(grid, base="fp32"):
    """Return positive FP32 bit patterns at the hard cases of ``grid``, from formulas only.

    The binades run from below the subnormal range to above the window. Each gets every
    dropped-bit pattern (ties, one below and above, on the grid, all ones, lowest bit) under
    three kept patterns (1.00..0, 1.11..1, 1.00..01), and the value just below the next power
    of two.
    """
    p = 24 if base == "fp32" else 8
    m = grid.mantissa_bits
    low, high = max(grid.emin - m - 2, -149), min(grid.emax + 1, 127)
    exponents = sorted(set(range(low, low + 4)) | set(range(grid.emin - 2, grid.emin + 2))
                       | set(range(high - 3, high + 1)))
    found = set()
    for exponent in exponents:
        if not low <= exponent <= high:
            continue
        lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - m
        dropped = max(0, min(lsb - (exponent - p + 1), p))
        kept_bits = p - dropped
        kept_patterns = {1 << (kept_bits - 1), (1 << kept_bits) - 1,
                         (1 << (kept_bits - 1)) | 1} if kept_bits else {0}
        for kept in kept_patterns:
            for pattern in DROPPED_PATTERNS.values():
                rest = pattern(dropped) & ((1 << dropped) - 1) if dropped else 0
                significand = (kept << dropped) | rest or 1 << (p - 1)
                found.add(fp32_bits_of(significand, exponent, p, 0))
        found.add(fp32_bits_of((1 << p) - 1, exponent, p, 0))
    specials = SPECIAL_BITS if base == "fp32" else [b & 0xFFFF_0000 | (0x0001_0000 if
                                                    (b & 0x7FFF_FFFF) > 0x7F80_0000 else 0)
                                                    for b in SPECIAL_BITS]
    return sorted(found | set(specials))


def both_signs(bits):
    return bits + [b | 0x8000_0000 for b in bits]


def quantize_containers():
    """Yield (name, rules, container, anchor) of the quantize vectors."""
    for name, fields in PRESETS.items():
        for rounding in ("nearest_even", "toward_zero"):
            yield f"{name}/{rounding}", ["C3", "C7", "C8", "C9", "C13", "C14", "C16"], \
                Container(**fields, rounding=rounding), None
    yield "training_e3m1@0", ["C4", "C5", "C12"], Container.training(3, 1), 0
    yield "training_e4m2@-120/toward_zero", ["C4", "C5", "C9"], \
        Container.training(4, 2, "toward_zero"), -120
    yield "training_e8m7@127", ["C4", "C5", "C13"], Container.training(8, 7), 127
    yield "training_e5m3@max", ["C6"], Container.training(5, 3), "max"
    yield "e4m3fn@max", ["C6"], Container.from_name("e4m3fn"), "max"
    yield "e2m0_fn", ["C2"], Container(2, 0, specials="fn"), None
    yield "e4m3_none_nonsaturating", ["C2", "C13"], Container(4, 3, specials="none"), None
    yield "e3m2_stochastic", ["C10"], Container(3, 2, rounding="stochastic"), None
    yield "e8m10_stochastic", ["C10"], Container(8, 10, rounding="stochastic"), None
    yield "bf16_base_e4m3", ["C15"], Container(4, 3, base="bf16"), None
    yield "bf16_base_e5m2_stochastic", ["C10", "C15"], \
        Container(5, 2, rounding="stochastic", base="bf16"), None


def stochastic_noise(bits, grid):
    """Return noise per element cycling through threshold, threshold - 1, 0 and 2^32 - 1."""
    from conformance.strategies import stochastic_threshold

    noise = []
    for i, b in enumerate(bits):
        threshold = stochastic_threshold(b, grid)
        choices = (min(threshold, 2**32 - 1), max(threshold - 1, 0), 0, 2**32 - 1)
        noise.append(choices[i % 4])
    return noise


def quantize_record(name, rules, container, anchor):
    grid_anchor = None if anchor == "max" else anchor
    bits = both_signs(hard_inputs(oracle.grid_of(container, grid_anchor), container.base))
    if anchor == "max":
        valid = [b for b in bits if (b & 0x7FFF_FFFF) <= 0x7F80_0000]
        grid = oracle.grid_of(container, oracle.max_anchor(valid, container))
    else:
        grid = oracle.grid_of(container, anchor)
    noise = stochastic_noise(bits, grid) if container.rounding == "stochastic" else None
    results = [oracle.quantize_bits(b, grid, 0 if noise is None else noise[i])
               for i, b in enumerate(bits)]
    keep = [i for i, r in enumerate(results) if r != oracle.ERROR]
    if anchor == "max":
        # The anchor depends on the whole tensor, so it is recomputed without the rejected inputs.
        grid = oracle.grid_of(container, oracle.max_anchor([bits[i] for i in keep], container))
        results = [oracle.quantize_bits(bits[i], grid) for i in range(len(bits))]
    return {
        "kind": "quantize", "name": name, "rules": rules, "container": _fields(container),
        "anchor": anchor, "x": [_hex(bits[i]) for i in keep],
        "noise": None if noise is None else [_hex(noise[i]) for i in keep],
        "y": [_hex(results[i]) for i in keep],
        "x_error": [_hex(b) for b, r in zip(bits, results) if r == oracle.ERROR],
    }


def code_containers():
    """Yield (name, rules, container, anchor) of the codes vectors: every code of each."""
    for name in ("e5m2", "e4m3fn", "e3m4", "e3m2fn", "e2m3fn", "e2m1fn"):
        yield name, ["C17", "C19", "C20"], Container.from_name(name), None
    yield "training_e3m2@-3", ["C17", "C20"], Container.training(3, 2), -3
    yield "e2m2_ieee", ["C17", "C19"], Container(2, 2), None
    yield "e4m3_wide_window@-140", ["C20"], Container(4, 3), -140


def codes_record(name, rules, container, anchor):
    from conformance.suites.containers import decoded_bits

    grid = oracle.grid_of(container, anchor)
    codes = list(range(2**container.bits))
    return {
        "kind": "codes", "name": name, "rules": rules, "container": _fields(container),
        "anchor": anchor, "codes": [hex(c) for c in codes],
        "y": [_hex(decoded_bits(c, grid)) for c in codes],
    }


def _fields(container):
    return {field: getattr(container, field) for field in FIELDS}


def _hex(bits):
    return "error" if bits == oracle.ERROR else f"0x{bits:08x}"


def build():
    records = [quantize_record(*case) for case in quantize_containers()]
    records += [codes_record(*case) for case in code_containers()]
    return DESCRIPTION, records
