"""A second, independent quantizer written from SPEC.md section C alone, in PyTorch integer ops.

It shares no code with ``reference/``. It reads the eight fields of the container, derives the
value set from rules C2 and C5, and rounds the integer significand of each FP32 value once
(C7-C10), all in int64 tensor arithmetic. It is the example of a third-party backend that
passes the suite, and it runs only where PyTorch is installed.
"""

import importlib.util

import numpy as np

from conformance.backend import BackendUnavailable, BaseBackend

SIGN = 0x8000_0000
MAGNITUDE = 0x7FFF_FFFF
INF = 0x7F80_0000
QUIET_NAN = 0x7FC0_0000
LOWEST_EXPONENT = {"fp32": -149, "bf16": -133}


class Window:
    """The value set of a container with its window placed, as plain ints (C2, C5)."""

    def __init__(self, container, anchor):
        e, m = container.exponent_bits, container.mantissa_bits
        all_ones = 2**e - 1
        fn_without_top = container.specials == "fn" and m == 0
        self.top_code = all_ones - 1 if container.specials == "ieee" or fn_without_top else all_ones
        self.bias = container.bias if anchor is None else self.top_code - anchor
        self.m = m
        self.emin = 1 - self.bias
        self.emax = self.top_code - self.bias
        self.max_significand = 2 ** (m + 1) - 1 - (container.specials == "fn" and m > 0)
        self.has_inf = container.specials == "ieee"
        self.has_nan = container.specials == "fn" or (container.specials == "ieee" and m > 0)
        self.subnormals = container.subnormals
        self.saturate = container.saturate
        self.rounding = container.rounding
        low = LOWEST_EXPONENT[container.base]
        if not low <= self.emax <= 127:
            raise ValueError(f"window: the largest normal exponent must be in {low}..127; got "
                             f"{self.emax} (pass another anchor or bias)")


def bit_length(values, torch):
    """Return the bit length of each non-negative int64 below 2^26, by shifts and compares."""
    length = torch.zeros_like(values)
    for k in range(26):
        length += (values >> k) > 0
    return length


class TorchBackend(BaseBackend):
    """quantize, encode and decode in PyTorch int64 ops: every mode, anchors and both bases."""

    name = "torch"
    capabilities = frozenset({"quantize", "quantize.bf16", "quantize.stochastic",
                              "quantize.max_anchor", "quantize.errors", "codes", "codes.errors"})

    def __init__(self):
        if importlib.util.find_spec("torch") is None:
            raise BackendUnavailable("torch backend: PyTorch is not installed "
                                     "(pip install torch==2.13.0, a CPU build, to run it)")
        import torch

        self.torch = torch

    def quantize(self, x, container, *, anchor=None, noise=None):
        torch = self.torch
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise ValueError(f"x must be a float32 numpy array; got {getattr(x, 'dtype', x)!r}")
        self._check_noise(noise, x.shape, container)
        bits = torch.from_numpy(x.reshape(-1).view(np.uint32).astype(np.int64))
        if container.base == "bf16":
            self._check_bf16(bits)
        if isinstance(anchor, str):
            if anchor != "max":
                raise ValueError(f"anchor must be None, an int or 'max'; got {anchor!r}")
            anchor = self._max_anchor(bits, container)
        window = Window(container, anchor)
        noise_bits = None
        if noise is not None:
            noise_bits = torch.from_numpy(noise.reshape(-1).astype(np.int64))
        out = self._quantize_bits(bits, window, noise_bits)
        return out.numpy().astype(np.uint32).view(np.float32).reshape(x.shape)

    # Codes (C17-C20): sign'exponent'mantissa in the low bits of the narrowest unsigned dtype.

    def encode(self, x, container, *, anchor=None):
        torch = self.torch
        if isinstance(anchor, str):
            raise ValueError(f"encode: anchor must be None or an int; got {anchor!r}")
        w = Window(container, anchor)
        e, m = container.exponent_bits, container.mantissa_bits
        bits = torch.from_numpy(x.reshape(-1).view(np.uint32).astype(np.int64))
        sign = (bits >> 31) << (e + m)
        magnitude = bits & MAGNITUDE
        is_nan, is_inf, is_zero = magnitude > INF, magnitude == INF, magnitude == 0
        finite = ~(is_nan | is_inf | is_zero)

        significand, scale, exponent = self._fields(torch.where(finite, magnitude, 0x3F80_0000))
        normal = exponent >= w.emin
        lsb = torch.where(normal, exponent, torch.full_like(exponent, w.emin)) - m
        shift = lsb - scale  # dropped bits: a member drops only zeros
        kept = torch.where(shift >= 0, significand >> shift.clamp(0, 40),
                           significand << (-shift).clamp(0, 40))
        on_grid = (shift <= 0) | ((significand & ((1 << shift.clamp(0, 40)) - 1)) == 0)
        exponent_code = torch.where(normal, exponent + w.bias, torch.zeros_like(exponent))
        mantissa = torch.where(normal, kept - (1 << m), kept)
        member = on_grid & (exponent_code <= w.top_code) & (normal | torch.tensor(w.subnormals))
        member &= ~((exponent_code == w.top_code) & (mantissa > w.max_significand - (1 << m)))
        member &= kept > 0
        codes = (exponent_code << m) | mantissa

        all_ones = (2**e - 1) << m
        codes = torch.where(is_inf, torch.full_like(codes, all_ones), codes)
        if w.has_nan:
            nan_code = all_ones | (1 << (m - 1)) if w.has_inf else 2 ** (e + m) - 1
            codes = torch.where(is_nan, torch.full_like(codes, nan_code), codes)
        codes = torch.where(is_zero, torch.zeros_like(codes), codes)
        valid = (finite & member) | is_zero | (is_inf & w.has_inf) | (is_nan & w.has_nan)
        if not bool(valid.all()):
            self._raise_first(~valid, bits, f"encode: x must contain only members of the "
                                            f"container (C18); quantize x first")
        dtype = np.uint8 if container.bits <= 8 else np.uint16 if container.bits <= 16 \
            else np.uint32
        return (codes | sign).numpy().astype(dtype).reshape(x.shape)

    def decode(self, codes, container, *, anchor=None):
        torch = self.torch
        if isinstance(anchor, str):
            raise ValueError(f"decode: anchor must be None or an int; got {anchor!r}")
        codes = np.asarray(codes)
        if codes.dtype.kind != "u":
            raise ValueError(f"decode: codes must have an unsigned dtype; got {codes.dtype}")
        w = Window(container, anchor)
        e, m = container.exponent_bits, container.mantissa_bits
        flat = torch.from_numpy(codes.reshape(-1).astype(np.int64))

        exponent_code = (flat >> m) & (2**e - 1)
        mantissa = flat & (2**m - 1)
        all_ones = exponent_code == 2**e - 1
        is_inf = all_ones & (mantissa == 0) & w.has_inf
        if container.specials == "ieee":
            is_nan = all_ones & (mantissa != 0)
        elif container.specials == "fn":
            is_nan = all_ones & (mantissa == 2**m - 1)
        else:
            is_nan = torch.zeros_like(all_ones)

        normal = exponent_code > 0
        kept = torch.where(normal, mantissa + (1 << m), mantissa)
        lsb = torch.where(normal, exponent_code - w.bias, torch.full_like(flat, w.emin)) - m
        # C20: a code below FP32's smallest subnormal is no FP32 value.
        representable = (lsb >= -149) | ((kept & ((1 << (-149 - lsb).clamp(0, 40)) - 1)) == 0)
        invalid = (flat >> (e + m + 1)) != 0
        invalid |= ~normal & (mantissa != 0) & ~torch.tensor(w.subnormals)
        invalid |= ~representable & ~(is_nan | is_inf)
        if bool(invalid.any()):
            self._raise_first(invalid, flat, "decode: a code that encode never emits (C20)")

        out = torch.where(kept == 0, torch.zeros_like(flat), self._fp32_bits(kept, lsb))
        out = torch.where(is_inf, torch.full_like(out, INF), out)
        out = torch.where(is_nan, torch.full_like(out, QUIET_NAN), out)
        out = out | (((flat >> (e + m)) & 1) << 31)
        return out.numpy().astype(np.uint32).view(np.float32).reshape(codes.shape)

    # Input checks (C11, C15).

    @staticmethod
    def _check_noise(noise, shape, container):
        stochastic = container.rounding == "stochastic"
        if stochastic != (noise is not None):
            raise ValueError("noise must be a uint32 array of x's shape exactly when rounding "
                             f"is stochastic; got {type(noise).__name__} with rounding "
                             f"{container.rounding!r}")
        if stochastic and (not isinstance(noise, np.ndarray) or noise.dtype != np.uint32
                           or noise.shape != tuple(shape)):
            raise ValueError(f"noise must be uint32 of shape {tuple(shape)}; got "
                             f"{getattr(noise, 'dtype', None)} {getattr(noise, 'shape', None)}")

    def _check_bf16(self, bits):
        magnitude = bits & MAGNITUDE
        bad = ((bits & 0xFFFF) != 0) & (magnitude <= INF)
        if bool(bad.any()):
            index = int(self.torch.nonzero(bad)[0])
            raise ValueError(f"x must hold BF16 values with base 'bf16'; element {index} is "
                             f"0x{int(bits[index]):08x}")

    # Significands and exponents (C7): value = significand * 2^scale, exponent = floor(log2).

    def _fields(self, magnitude):
        field = magnitude >> 23
        fraction = magnitude & 0x7F_FFFF
        normal = field > 0
        significand = self.torch.where(normal, fraction | (1 << 23), fraction)
        scale = self.torch.where(normal, field - 150, self.torch.full_like(field, -149))
        exponent = scale + bit_length(significand, self.torch) - 1
        return significand, scale, exponent

    def _round(self, significand, dropped, rounding, noise):
        torch = self.torch
        shift = dropped.clamp(0, 40)
        kept = significand >> shift
        rest = significand & ((torch.ones_like(shift) << shift) - 1)
        if rounding == "toward_zero":
            up = torch.zeros_like(kept, dtype=torch.bool)
        elif rounding == "nearest_even":
            half = torch.where(shift > 0, torch.ones_like(shift) << (shift - 1).clamp(min=0),
                               torch.zeros_like(shift))
            up = (rest > half) | ((rest == half) & ((kept & 1) == 1))
        else:
            # With d > 32 only the 32 leading dropped bits count: floor(D / 2^(d - 32)).
            threshold = torch.where(dropped <= 32, rest << (32 - dropped).clamp(min=0),
                                    rest >> (dropped - 32).clamp(0, 62))
            up = noise < threshold
        up = up & (shift > 0)
        return kept + up.long()

    def _quantize_bits(self, bits, w, noise):
        torch = self.torch
        sign = bits & SIGN
        magnitude = bits & MAGNITUDE
        is_nan = magnitude > INF
        is_inf = magnitude == INF
        is_zero = magnitude == 0
        finite = ~(is_nan | is_inf | is_zero)

        significand, scale, exponent = self._fields(torch.where(finite, magnitude, 0x3F80_0000))
        if w.subnormals:
            lsb = torch.clamp(exponent, min=w.emin) - w.m
        else:
            lsb = exponent - w.m
        if noise is None:
            noise = torch.zeros_like(bits)
        kept = self._round(significand, lsb - scale, w.rounding, noise)
        kept = torch.where(lsb - scale > 0, kept, significand)
        lsb = torch.where(lsb - scale > 0, lsb, scale)

        # Underflow without subnormals (C12): a result below min_normal is a signed zero.
        result_exponent = lsb + bit_length(kept, torch) - 1
        flushed = (kept == 0) | (~torch.tensor(w.subnormals) & (result_exponent < w.emin))
        # Overflow after rounding (C13): kept * 2^lsb > max_significand * 2^(emax - m). Both
        # significands are below 2^25, so shifts beyond 30 decide nothing and stay in int64.
        gap = (w.emax - w.m) - lsb
        overflow = finite & ~flushed & torch.where(
            gap >= 0, kept > (w.max_significand << gap.clamp(0, 30)),
            (kept << (-gap).clamp(0, 30)) > w.max_significand)

        out = self._fp32_bits(kept, lsb)
        out = torch.where(flushed, torch.zeros_like(out), out)
        out = self._out_of_range(out, overflow | is_inf, w, bits)
        out = torch.where(is_zero, torch.zeros_like(out), out)
        if bool(is_nan.any()):
            if not w.has_nan:
                self._raise_first(is_nan, bits, "x contains NaN but the container has no NaN "
                                                "code (C14)")
            out = torch.where(is_nan, torch.full_like(out, QUIET_NAN), out)
        return out | sign

    def _fp32_bits(self, kept, lsb):
        torch = self.torch
        length = bit_length(kept, torch)
        exponent = lsb + length - 1
        shift = 24 - length
        normalized = torch.where(shift >= 0, kept << shift.clamp(min=0),
                                 kept >> (-shift).clamp(min=0))
        normal = ((exponent + 127) << 23) | (normalized - (1 << 23))
        subnormal = torch.where(lsb >= -149, kept << (lsb + 149).clamp(0, 40),
                                kept >> (-149 - lsb).clamp(0, 40))
        return torch.where(exponent >= -126, normal, subnormal)

    def _out_of_range(self, out, mask, w, bits):
        torch = self.torch
        if not bool(mask.any()):
            return out
        if w.saturate:
            top = torch.tensor([w.max_significand]), torch.tensor([w.emax - w.m])
            replacement = int(self._fp32_bits(*top)[0])
        elif w.has_inf:
            replacement = INF
        elif w.has_nan:
            replacement = QUIET_NAN
        else:
            self._raise_first(mask, bits, "x overflows a container without inf or NaN that does "
                                          "not saturate (C13)")
        return torch.where(mask, torch.full_like(out, replacement), out)

    def _raise_first(self, mask, bits, message):
        index = int(self.torch.nonzero(mask)[0])
        raise ValueError(f"{message}; first at element {index}: 0x{int(bits[index]):08x}")

    # The anchor from the tensor (C6).

    def _max_anchor(self, bits, container):
        torch = self.torch
        magnitude = bits & MAGNITUDE
        finite = magnitude[(magnitude != 0) & (magnitude < INF)]
        if finite.numel() == 0:
            all_ones = 2**container.exponent_bits - 1
            fn_without_top = container.specials == "fn" and container.mantissa_bits == 0
            top_code = all_ones - 1 if container.specials == "ieee" or fn_without_top else all_ones
            low = LOWEST_EXPONENT[container.base]
            return min(max(top_code - container.bias, low), 127)
        significand, scale, exponent = self._fields(finite.max().reshape(1))
        dropped = exponent - container.mantissa_bits - scale
        if container.rounding == "stochastic":
            shift = dropped.clamp(0, 40)
            kept = (significand >> shift) + ((significand & ((1 << shift) - 1)) != 0).long()
        else:
            kept = self._round(significand, dropped, container.rounding, None)
        kept = torch.where(dropped > 0, kept, significand)
        lsb = torch.where(dropped > 0, exponent - container.mantissa_bits, scale)
        return min(int((lsb + bit_length(kept, torch) - 1)[0]), 127)
