"""Footprint accounting: the bits of every stored tensor instance over a training run.

A stored tensor instance is one read of a layer's weight or one stashed input activation at one
training step. Each value of a container with e exponent bits and m mantissa bits takes
``1 + e + m`` bits. The footprint of a run is the sum over all instances. Its ratio against FP32
(or BF16) is the bits of the same instances at 32 (or 16) bits divided by the footprint. A ratio
of 4 means the run stored a quarter of the bits that FP32 training would have stored.

An encoder that codes the exponent field losslessly (Gecko) can record the measured size of that
field with ``coded_exponent_bits``. The plain ratios ignore it and ``ratio_fp32_coded`` uses it.

>>> ledger = FootprintLedger()
>>> ledger.record(0, "fc1", "weight", elements=100, exponent_bits=4, mantissa_bits=3)
>>> ledger.record(0, "fc1", "activation", elements=60, exponent_bits=8, mantissa_bits=23)
>>> ledger.total_bits()
2720
>>> round(ledger.ratio_fp32(), 4)
1.8824
"""

from typing import NamedTuple

import numpy as np

FP32_BITS = 32
BF16_BITS = 16


def bits_per_value(exponent_bits, mantissa_bits):
    """Return the stored bits of one value: sign, exponent field and mantissa field."""
    return 1 + int(exponent_bits) + int(mantissa_bits)


class TensorFootprint(NamedTuple):
    """Totals of one tensor (one layer's weight or input activation) over the recorded steps."""

    name: str
    kind: str
    instances: int
    """steps at which the tensor was stored"""
    elements: int
    """values stored, summed over instances"""
    bits: int
    """stored bits, summed over instances"""
    coded_bits: int
    """stored bits with the exponent field at its recorded coded size"""
    max_elements: int
    """values of the largest instance (a full batch, for activations)"""

    @property
    def ratio_fp32(self):
        return FP32_BITS * self.elements / self.bits

    @property
    def ratio_bf16(self):
        return BF16_BITS * self.elements / self.bits


class FootprintLedger:
    """Per-step records of stored tensor instances, with totals and ratios.

    Records are kept as growing columns so that a run of many steps and tensors stays compact;
    ``per_step_bits`` gives the curve for a footprint-over-training plot.
    """

    def __init__(self):
        self._names = []
        self._index = {}
        self._steps = []
        self._tensor_ids = []
        self._elements = []
        self._exponent_bits = []
        self._mantissa_bits = []
        self._coded_exponent_bits = []

    def record(self, step, name, kind, elements, exponent_bits, mantissa_bits,
               coded_exponent_bits=None):
        """Record one stored instance of tensor ``name`` (``kind`` "weight" or "activation").

        ``exponent_bits`` and ``mantissa_bits`` are the integer widths actually stored.
        ``coded_exponent_bits`` is the total size in bits of the coded exponent field of this
        instance; None means the plain field, ``elements * exponent_bits``.
        """
        if kind not in ("weight", "activation"):
            raise ValueError(f"footprint kind: must be 'weight' or 'activation'; got {kind!r}")
        if not (1 <= exponent_bits <= 8 and 0 <= mantissa_bits <= 23):
            raise ValueError(
                "footprint widths: exponent_bits must be in [1, 8] and mantissa_bits in [0, 23]; "
                f"got exponent_bits={exponent_bits}, mantissa_bits={mantissa_bits} for {name!r}"
            )
        key = (name, kind)
        if key not in self._index:
            self._index[key] = len(self._names)
            self._names.append(key)
        if coded_exponent_bits is None:
            coded_exponent_bits = int(elements) * int(exponent_bits)
        self._steps.append(int(step))
        self._tensor_ids.append(self._index[key])
        self._elements.append(int(elements))
        self._exponent_bits.append(int(exponent_bits))
        self._mantissa_bits.append(int(mantissa_bits))
        self._coded_exponent_bits.append(int(coded_exponent_bits))

    def __len__(self):
        return len(self._steps)

    def records(self):
        """Return every record as ``(step, name, kind, elements, exponent_bits, mantissa_bits)``."""
        return [(step, *self._names[tensor_id], elements, exponent_bits, mantissa_bits)
                for step, tensor_id, elements, exponent_bits, mantissa_bits in zip(
                    self._steps, self._tensor_ids, self._elements, self._exponent_bits,
                    self._mantissa_bits)]

    def _columns(self):
        elements = np.asarray(self._elements, dtype=np.int64)
        widths = 1 + np.asarray(self._exponent_bits, np.int64) + np.asarray(self._mantissa_bits,
                                                                            np.int64)
        coded = elements * (1 + np.asarray(self._mantissa_bits, np.int64)) + np.asarray(
            self._coded_exponent_bits, np.int64)
        return np.asarray(self._tensor_ids, np.int64), elements, elements * widths, coded

    def total_elements(self):
        return int(sum(self._elements))

    def total_bits(self):
        _, _, bits, _ = self._columns()
        return int(bits.sum())

    def ratio_fp32(self):
        """Return FP32 bits of the recorded instances divided by their stored bits."""
        return FP32_BITS * self.total_elements() / self._nonzero_total()

    def ratio_bf16(self):
        """Return BF16 bits of the recorded instances divided by their stored bits."""
        return BF16_BITS * self.total_elements() / self._nonzero_total()

    def ratio_fp32_coded(self):
        """Return FP32 bits divided by stored bits with exponents at their coded size."""
        _, _, _, coded = self._columns()
        return FP32_BITS * self.total_elements() / int(coded.sum())

    def _nonzero_total(self):
        total = self.total_bits()
        if total == 0:
            raise ValueError("footprint ratio: the ledger must hold at least one stored value; "
                             "got 0 stored bits (record instances before asking for ratios)")
        return total

    def tensors(self):
        """Return one :class:`TensorFootprint` per tensor, in first-recorded order."""
        ids, elements, bits, coded = self._columns()
        count = len(self._names)
        instances = np.bincount(ids, minlength=count)
        element_sums = _sum_by(ids, elements, count)
        bit_sums = _sum_by(ids, bits, count)
        coded_sums = _sum_by(ids, coded, count)
        largest = np.zeros(count, dtype=np.int64)
        np.maximum.at(largest, ids, elements)
        return [
            TensorFootprint(name, kind, int(instances[i]), int(element_sums[i]),
                            int(bit_sums[i]), int(coded_sums[i]), int(largest[i]))
            for i, (name, kind) in enumerate(self._names)
        ]

    def per_step_bits(self):
        """Return ``(steps, stored_bits, fp32_bits)``: one entry per recorded step, sorted."""
        steps = np.asarray(self._steps, dtype=np.int64)
        _, elements, bits, _ = self._columns()
        unique_steps, inverse = np.unique(steps, return_inverse=True)
        stored = _sum_by(inverse, bits, len(unique_steps))
        fp32 = FP32_BITS * _sum_by(inverse, elements, len(unique_steps))
        return unique_steps, stored, fp32


def _sum_by(ids, values, count):
    # Integer sums, because bincount's float64 weights would round totals past 2**53 bits.
    sums = np.zeros(count, dtype=np.int64)
    np.add.at(sums, ids, values)
    return sums
