"""Checks of SPEC.md section C: quantize against the exact oracle, and the codes layer."""

import numpy as np
from hypothesis import strategies as st

from conformance import oracle
from conformance.registry import Mismatch, check, run_property
from conformance.strategies import (
    ROUNDINGS, containers, element_bits, quantize_cases,
)
from conformance.suites.compare import (
    call_backend, check_quantize_case, describe_container, hex32,
)
from reference.container import PRESETS, Container

SUITE = "containers"
PRESET_PAIRS = [
    (Container(**PRESETS[name], rounding=rounding), None)
    for name in PRESETS for rounding in ROUNDINGS
]
ROUNDING_RULES = ("C2", "C4", "C5", "C7", "C8", "C9", "C12", "C13", "C14", "C16")


def _property(backend, with_errors):
    return lambda case: check_quantize_case(backend, case, with_errors)


@check(SUITE, "quantize-fp32", ROUNDING_RULES + ("T1",), {"quantize"})
def quantize_fp32(backend, examples):
    """Check quantize on base fp32 against the oracle, for any container and anchor."""
    run_property(_property(backend, False), quantize_cases("fp32"), examples)


@check(SUITE, "quantize-presets", ("C3",), {"quantize"})
def quantize_presets(backend, examples):
    """Check quantize to the standard formats against the oracle."""
    strategy = quantize_cases("fp32", container_pairs=st.sampled_from(PRESET_PAIRS))
    run_property(_property(backend, False), strategy, examples)


@check(SUITE, "quantize-bf16", ("C15",) + ROUNDING_RULES, {"quantize", "quantize.bf16"})
def quantize_bf16(backend, examples):
    """Check quantize on base bf16 (float32 arrays of BF16 values) against the oracle."""
    run_property(_property(backend, False), quantize_cases("bf16"), examples)


@check(SUITE, "quantize-stochastic", ("C10",), {"quantize", "quantize.stochastic"})
def quantize_stochastic(backend, examples):
    """Check stochastic rounding against the oracle, with noise at and beside each threshold."""
    strategy = quantize_cases("fp32", roundings=("stochastic",))
    run_property(_property(backend, False), strategy, examples)


@check(SUITE, "quantize-max-anchor", ("C6",), {"quantize", "quantize.max_anchor"})
def quantize_max_anchor(backend, examples):
    """Check that anchor="max" uses the exponent of the largest value after rounding."""

    def prop(case):
        try:
            check_quantize_case(backend, case, False)
        except Mismatch as mismatch:
            if mismatch.rule in ("C7", "C8", "C9", "C12", "C13", "C2"):
                mismatch.rule = "C6"  # with a correct window the other rules pass elsewhere
            raise

    strategy = quantize_cases("fp32", anchor_max=True)
    run_property(prop, strategy, examples)


@check(SUITE, "quantize-errors", ("C13", "C14"), {"quantize", "quantize.errors"})
def quantize_errors(backend, examples):
    """Check that NaN without a NaN code, and overflow with nowhere to go, raise ValueError."""
    strategy = quantize_cases("fp32", container_pairs=containers("fp32").filter(
        lambda pair: not pair[0].has_nan or not (pair[0].has_inf or pair[0].saturate)))
    run_property(_property(backend, True), strategy, examples)


@check(SUITE, "quantize-sign-symmetry", ("C16",), {"quantize"})
def quantize_sign_symmetry(backend, examples):
    """Check that quantize(-x) is quantize(x) with the sign bit flipped, −0 included."""

    def prop(case):
        grid = case.grid
        bits = [b for b in case.bits if oracle.quantize_bits(b, grid) != oracle.ERROR]
        if not bits:
            return
        x = np.array(bits, np.uint32).view(np.float32)
        inputs = {"container": describe_container(case.container, case.anchor),
                  "anchor": case.anchor}
        positive = call_backend(backend.quantize, "C16", inputs, "a result", np.abs(x),
                                case.container, anchor=case.anchor)
        negative = call_backend(backend.quantize, "C16", inputs, "a result", -np.abs(x),
                                case.container, anchor=case.anchor)
        flipped = np.asarray(positive).view(np.uint32) ^ np.uint32(1 << 31)
        actual = np.asarray(negative).view(np.uint32)
        for i in np.flatnonzero(flipped != actual):
            raise Mismatch("C16", "quantize(-x) must be -quantize(x)",
                           dict(inputs, x=hex32(int(x.view(np.uint32)[i]) | 1 << 31)),
                           hex32(int(flipped[i])), hex32(int(actual[i])))

    run_property(prop, quantize_cases("fp32"), examples)


@check(SUITE, "noise-argument", ("C11",), {"quantize.stochastic", "quantize.errors"})
def noise_argument(backend, examples):
    """Check that missing, mistyped or misshaped noise, or noise without need, raises."""
    x = np.float32([1.0, 1.5, -3.25, 0.0])
    stochastic = Container(4, 3, rounding="stochastic")
    cases = [
        ("noise missing with stochastic rounding", stochastic, None),
        ("noise of dtype int64", stochastic, np.zeros(4, np.int64)),
        ("noise of shape (3,)", stochastic, np.zeros(3, np.uint32)),
        ("noise with nearest_even rounding", Container(4, 3), np.zeros(4, np.uint32)),
    ]
    for what, container, noise in cases:
        try:
            backend.quantize(x, container, noise=noise)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as error:  # the rule requires ValueError in particular
            raise Mismatch("C11", what, {"container": container.name}, "ValueError",
                           type(error).__name__) from error
        raise Mismatch("C11", what, {"container": container.name}, "ValueError", "a result")


@check(SUITE, "bf16-input", ("C15",), {"quantize.bf16", "quantize.errors"})
def bf16_input(backend, examples):
    """Check that base bf16 rejects float32 values whose low 16 bits are set."""
    container = Container(4, 3, base="bf16")
    x = np.array([0x3F80_0000, 0x3F82_8001], np.uint32).view(np.float32)
    inputs = {"container": container.name, "x": "0x3f828001", "element": 1}
    try:
        backend.quantize(x, container)
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as error:  # the rule requires ValueError in particular
        raise Mismatch("C15", "a non-BF16 value must raise", inputs, "ValueError",
                       type(error).__name__) from error
    raise Mismatch("C15", "a non-BF16 value must raise", inputs, "ValueError", "a result")


# Codes (C17-C20): every code of small containers, by enumeration.

CODE_WIDTHS = {8: np.uint8, 16: np.uint16, 32: np.uint32}


def code_dtype(bits):
    return next(dtype for width, dtype in CODE_WIDTHS.items() if bits <= width)


def canonical_nan_code(grid):
    """Return the positive NaN code that encode must emit (C19), or None without NaN codes."""
    e, m = grid.exponent_bits, grid.mantissa_bits
    if grid.specials == "ieee" and m > 0:
        return ((2**e - 1) << m) | (1 << (m - 1))
    if grid.specials == "fn":
        return 2 ** (e + m) - 1
    return None


def decoded_bits(code, grid):
    """Return the FP32 bits that ``code`` decodes to on ``grid``, or ERROR (C17, C19, C20)."""
    value, sign = oracle.code_value(code, grid)
    if value == "nan":
        return oracle.FP32_QUIET_NAN | sign << 31
    if value == "inf":
        return oracle.FP32_INF | sign << 31
    if value is None or (value * 2**149).denominator != 1:
        return oracle.ERROR
    return oracle.fp32_encode(value, sign)


@st.composite
def small_containers(draw):
    container, anchor = draw(containers("fp32").filter(lambda pair: pair[0].bits <= 11))
    return container, anchor


@check(SUITE, "codes-enumeration", ("C17", "C19"), {"codes"})
def codes_enumeration(backend, examples):
    """Check decode of every code against the oracle, and encode of every member."""

    def prop(pair):
        container, anchor = pair
        grid = oracle.grid_of(container, anchor)
        dtype = code_dtype(container.bits)
        codes = np.arange(2**container.bits, dtype=np.uint64)
        expected = [decoded_bits(int(c), grid) for c in codes]
        inputs = {"container": describe_container(container, anchor), "anchor": anchor}
        valid = np.array([e != oracle.ERROR for e in expected])
        decoded = call_backend(backend.decode, "C17", inputs, "float32 values",
                               codes[valid].astype(dtype), container, anchor=anchor)
        decoded = np.asarray(decoded)
        if decoded.dtype != np.float32:
            raise Mismatch("C17", "decode must return float32", inputs, "float32",
                           str(decoded.dtype))
        actual = decoded.view(np.uint32).tolist()
        wanted = [e for e in expected if e != oracle.ERROR]
        for code, want, got in zip(codes[valid].tolist(), wanted, actual):
            if want != got:
                rule = "C19" if (want & 0x7FFF_FFFF) > oracle.FP32_INF else "C17"
                raise Mismatch(rule, "decode result differs", dict(inputs, code=hex(code)),
                               hex32(want), hex32(got))
        _check_encode(backend, container, anchor, grid, codes[valid], decoded, inputs)

    run_property(prop, small_containers(), max(1, examples // 4))


@check(SUITE, "invalid-codes", ("C20",), {"codes", "codes.errors"})
def invalid_codes(backend, examples):
    """Check that decode raises ValueError for codes that encode never emits."""

    def prop(pair):
        container, anchor = pair
        grid = oracle.grid_of(container, anchor)
        dtype = code_dtype(container.bits)
        inputs = {"container": describe_container(container, anchor), "anchor": anchor}
        invalid = [c for c in range(2**container.bits) if decoded_bits(c, grid) == oracle.ERROR]
        if container.bits < np.dtype(dtype).itemsize * 8:
            invalid.append(1 << container.bits)  # a bit above the code width
        for code in invalid[:3] + invalid[-1:]:
            _expect_decode_error(backend, container, anchor, code, dtype, inputs)

    run_property(prop, small_containers(), max(1, examples // 4))


def _check_encode(backend, container, anchor, grid, codes, members, inputs):
    encoded = call_backend(backend.encode, "C17", inputs, "codes", members, container,
                           anchor=anchor)
    encoded = np.asarray(encoded)
    dtype = code_dtype(container.bits)
    if encoded.dtype != dtype:
        raise Mismatch("C17", "encode must return the narrowest unsigned dtype", inputs,
                       np.dtype(dtype).name, str(encoded.dtype))
    nan = canonical_nan_code(grid)
    sign_bit = 1 << (container.bits - 1)
    for code, member, got in zip(codes.tolist(), members.view(np.uint32).tolist(),
                                 encoded.tolist()):
        want, rule = code, "C17"
        if (member & 0x7FFF_FFFF) > oracle.FP32_INF:
            want, rule = nan | (code & sign_bit), "C19"
        if want != got:
            raise Mismatch(rule, "encode of a member differs", dict(inputs, x=hex32(member)),
                           hex(want), hex(got))


def _expect_decode_error(backend, container, anchor, code, dtype, inputs):
    inputs = dict(inputs, code=hex(code))
    try:
        backend.decode(np.array([code], dtype), container, anchor=anchor)
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as error:  # the rule requires ValueError in particular
        raise Mismatch("C20", "an invalid code must raise", inputs, "ValueError",
                       type(error).__name__) from error
    raise Mismatch("C20", "an invalid code must raise", inputs, "ValueError", "a result")


@check(SUITE, "encode-non-members", ("C18",), {"codes", "codes.errors"})
def encode_non_members(backend, examples):
    """Check that encode of a non-member raises ValueError instead of rounding it."""

    @st.composite
    def cases(draw):
        container, anchor = draw(containers("fp32"))
        bits = draw(element_bits(oracle.grid_of(container, anchor)))
        return container, anchor, bits

    def prop(case):
        container, anchor, bits = case
        grid = oracle.grid_of(container, anchor)
        rounded = oracle.quantize_bits(bits, grid)
        is_nan = (bits & 0x7FFF_FFFF) > oracle.FP32_INF
        is_inf = (bits & 0x7FFF_FFFF) == oracle.FP32_INF
        if rounded == bits or (is_nan and grid.has_nan) or (is_inf and grid.has_inf):
            return  # a member: ±inf of an ieee container is one even when quantize saturates
        inputs = {"container": describe_container(container, anchor), "anchor": anchor,
                  "x": hex32(bits)}
        try:
            codes = backend.encode(np.array([bits], np.uint32).view(np.float32), container,
                                   anchor=anchor)
        except ValueError:
            return
        except NotImplementedError:
            raise
        except Exception as error:  # the rule requires ValueError in particular
            raise Mismatch("C18", "encode of a non-member must raise", inputs, "ValueError",
                           type(error).__name__) from error
        raise Mismatch("C18", "encode of a non-member must raise", inputs, "ValueError",
                       f"code {hex(int(np.asarray(codes).reshape(-1)[0]))}")

    run_property(prop, cases(), examples)


# Golden vectors (conformance/vectors/containers.jsonl).


def _container_of(record):
    return Container(**record["container"])


def _needs(container, anchor):
    needs = {"quantize"}
    if container.base == "bf16":
        needs.add("quantize.bf16")
    if container.rounding == "stochastic":
        needs.add("quantize.stochastic")
    if anchor == "max":
        needs.add("quantize.max_anchor")
    return needs


def _bits(hex_list):
    return [int(h, 16) for h in hex_list]


def _vector_records(kind):
    from conformance import vectors

    _, records = vectors.load("containers.jsonl")
    return [r for r in records if r["kind"] == kind]


@check(SUITE, "quantize-vectors", ("C3",), {"quantize"})
def quantize_vectors(backend, examples):
    """Check that every quantize vector the backend can run gives its output."""
    from conformance.suites.compare import rule_of

    capabilities = set(backend.capabilities)
    for record in _vector_records("quantize"):
        container, anchor = _container_of(record), record["anchor"]
        if not _needs(container, anchor) <= capabilities:
            continue
        bits, want = _bits(record["x"]), _bits(record["y"])
        noise = None if record["noise"] is None else np.array(_bits(record["noise"]), np.uint32)
        inputs = {"vector": record["name"]}
        x = np.array(bits, np.uint32).view(np.float32)
        actual = call_backend(backend.quantize, record["rules"][0], inputs, "the vector's y", x,
                              container, anchor=anchor, noise=noise)
        got = np.asarray(actual).view(np.uint32).tolist()
        grid = oracle.grid_of(container, None if anchor == "max" else anchor)
        for i, (w, g) in enumerate(zip(want, got)):
            if w != g:
                rule = "C6" if anchor == "max" else rule_of(bits[i], w, g, grid)
                raise Mismatch(rule, "quantize differs from the vector",
                               dict(inputs, x=hex32(bits[i]), element=i), hex32(w), hex32(g))
        if "quantize.errors" in capabilities:
            for b in _bits(record["x_error"])[:4]:
                _check_vector_error(backend, record, container, anchor, b, grid)


@check(SUITE, "codes-vectors", ("C17", "C19"), {"codes"})
def codes_vectors(backend, examples):
    """Check that every codes vector decodes to its values and encodes back to its codes."""
    for record in _vector_records("codes"):
        _check_codes_vector(backend, record, _container_of(record), record["anchor"])


def _check_vector_error(backend, record, container, anchor, bits, grid):
    from conformance.suites.compare import rule_of

    noise = np.zeros(1, np.uint32) if container.rounding == "stochastic" else None
    inputs = {"vector": record["name"], "x": hex32(bits)}
    try:
        actual = backend.quantize(np.array([bits], np.uint32).view(np.float32), container,
                                  anchor=anchor, noise=noise)
    except ValueError:
        return
    raise Mismatch(rule_of(bits, oracle.ERROR, None, grid), "must raise ValueError", inputs,
                   "ValueError", hex32(int(np.asarray(actual).view(np.uint32)[0])))


def _check_codes_vector(backend, record, container, anchor):
    codes = np.array(_bits(record["codes"]), np.uint64)
    want = record["y"]
    valid = np.array([w != "error" for w in want])
    inputs = {"vector": record["name"]}
    dtype = code_dtype(container.bits)
    decoded = np.asarray(call_backend(backend.decode, "C17", inputs, "the vector's y",
                                      codes[valid].astype(dtype), container, anchor=anchor))
    got = decoded.view(np.uint32).tolist()
    for code, w, g in zip(codes[valid].tolist(), [w for w in want if w != "error"], got):
        if int(w, 16) != g:
            raise Mismatch("C17", "decode differs from the vector", dict(inputs, code=hex(code)),
                           w, hex32(g))
    grid = oracle.grid_of(container, anchor)
    _check_encode(backend, container, anchor, grid, codes[valid], decoded, inputs)
    if "codes.errors" in backend.capabilities:
        for code in codes[~valid][:2].tolist():
            _expect_decode_error(backend, container, anchor, code, dtype, inputs)
