"""The numpy reference as a backend: every capability, by calling ``reference`` directly."""

import numpy as np

from conformance.backend import CAPABILITIES, BaseBackend


class FixedUniforms:
    """A stand-in for ``numpy.random.Generator`` whose ``random()`` returns given floats in order.

    The reference draws the collapse of the exponent width first, then of the mantissa width.
    """

    def __init__(self, uniforms):
        self._uniforms = list(uniforms)

    def random(self):
        if not self._uniforms:
            raise ValueError("FixedUniforms: more draws than uniforms given; pass (u_e, u_m)")
        return self._uniforms.pop(0)


class NumpyBackend(BaseBackend):
    """``reference/``, the implementation that SPEC.md describes."""

    name = "numpy"
    capabilities = frozenset(CAPABILITIES)

    def quantize(self, x, container, *, anchor=None, noise=None):
        from reference import quantize

        return quantize(x, container, anchor=anchor, noise=noise)

    def encode(self, x, container, *, anchor=None):
        from reference import encode

        return encode(x, container, anchor=anchor)

    def decode(self, codes, container, *, anchor=None):
        from reference import decode

        return decode(codes, container, anchor=anchor)

    def encode_exponents(self, exponents, *, mode="fixed", group_size=32):
        from reference.gecko import encode_exponents

        return encode_exponents(exponents, mode=mode, group_size=group_size)

    def decode_exponents(self, blob):
        from reference.gecko import decode_exponents

        return decode_exponents(blob)

    def pack(self, x, container, *, anchor=None, mode="fixed", group_size=32):
        from reference.gecko import pack

        return pack(x, container, anchor=anchor, mode=mode, group_size=group_size)

    def unpack(self, blob):
        from reference.gecko import unpack

        return unpack(blob)

    def quantum_forward(self, x, exponent_bits, mantissa_bits, *, mode, uniforms):
        from reference.bitlength import quantum_narrow

        result = quantum_narrow(x, exponent_bits, mantissa_bits, mode=mode,
                                rng=FixedUniforms(uniforms))
        return result.value

    def quantum_gradient(self, x, grad_output, exponent_bits, mantissa_bits, *, mode, uniforms):
        from reference.bitlength import quantum_narrow, quantum_vjp

        result = quantum_narrow(x, exponent_bits, mantissa_bits, mode=mode,
                                rng=FixedUniforms(uniforms))
        return quantum_vjp(result.context, np.asarray(grad_output))

    def controller_init(self, config):
        from reference import controller

        return controller.init(config)

    def controller_update(self, state, loss, lr, config):
        from reference import controller

        return controller.update(state, loss, lr, config)
