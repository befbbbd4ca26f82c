"""Footprint accounting: the bits of every stored tensor instance over a training run.

A stored tensor instance is one read of a layer's weight or one stashed input activation at one
training step. Each value of a container with e exponent bits and m mantissa bits takes
``1 + e + m`` bits. The footprint of a run is the sum over all instances. Its ratio against FP32
(or BF16) is the bits of the same instances at 32 (or 16) bits divided by the footprint. A ratio
of 4 means the run stored a quarter of the bits that FP32 training would have stored.

The Gecko size of an instance is the length in bits of the instance packed with Gecko
(:func:`reference.gecko.pack`), recorded with :meth:`FootprintLedger.record_gecko` on sampled
steps. An instance without its own Gecko size counts its plain bits times the coded-to-plain
ratio of its tensor's latest sampled instance (SPEC.md F4). The plain ratios never use them.

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
    gecko_bits: float
    """Gecko-packed bits summed over instances, unsampled ones estimated (SPEC.md F4)"""
    gecko_instances: int
    """instances whose Gecko size was measured"""
    max_elements: int
    """values of the largest instance (a full batch, for activations)"""

    @property
    def ratio_fp32(self):
        return FP32_BITS * self.elements / self.bits

    @property
    def ratio_bf16(self):
        return BF16_BITS * self.elements / self.bits

    @property
    def ratio_fp32_gecko(self):
        """FP32 bits divided by Gecko bits, or None when no instance was measured."""
        if self.gecko_instances == 0:
            return None
        return FP32_BITS * self.elements / self.gecko_bits


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
        # Gecko-packed bits per record, -1 where the record's step was not sampled.
        self._gecko_bits = []
        self._latest_record = {}

    def record(self, step, name, kind, elements, exponent_bits, mantissa_bits):
        """Record one stored instance of tensor ``name`` (``kind`` "weight" or "activation").

        ``exponent_bits`` and ``mantissa_bits`` are the integer widths actually stored.
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
        self._latest_record[key] = len(self._steps)
        self._steps.append(int(step))
        self._tensor_ids.append(self._index[key])
        self._elements.append(int(elements))
        self._exponent_bits.append(int(exponent_bits))
        self._mantissa_bits.append(int(mantissa_bits))
        self._gecko_bits.append(-1)

    def record_gecko(self, step, name, kind, gecko_bits):
        """Record the Gecko-packed size in bits of the latest instance of a tensor at ``step``.

        The instance must be recorded first, with :meth:`record` at the same step.
        """
        index = self._latest_record.get((name, kind))
        if index is None or self._steps[index] != int(step):
            raise ValueError(f"footprint Gecko size: record the instance of {name!r} {kind} at "
                             f"step {step} with record() first; its latest record is at step "
                             f"{None if index is None else self._steps[index]}")
        if int(gecko_bits) <= 0:
            raise ValueError(f"footprint Gecko size: must be a positive number of bits; got "
                             f"{gecko_bits} for {name!r} {kind}")
        self._gecko_bits[index] = int(gecko_bits)

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
        return np.asarray(self._tensor_ids, np.int64), elements, elements * widths

    def _gecko_column(self, ids, bits):
        """Return the Gecko bits of every record, float64, estimated where not measured.

        An unmeasured record takes its plain bits times the coded-to-plain ratio of the latest
        earlier measured record of its tensor, or of the tensor's first measured record when
        none is earlier. A tensor never measured keeps its plain bits, and so does a record whose
        source record stored no values.
        """
        measured = np.asarray(self._gecko_bits, dtype=np.int64)
        gecko = bits.astype(np.float64)
        for tensor_id in range(len(self._names)):
            rows = np.flatnonzero(ids == tensor_id)
            sampled = measured[rows] >= 0
            if not sampled.any():
                continue
            # For each row, the position (within rows) of the latest sampled row at or before it.
            latest = np.maximum.accumulate(np.where(sampled, np.arange(rows.size), -1))
            latest[latest < 0] = np.flatnonzero(sampled)[0]
            source = rows[latest]
            source_bits = bits[source].astype(np.float64)
            ratio = np.divide(measured[source], source_bits, out=np.ones(rows.size),
                              where=source_bits > 0)
            gecko[rows] = np.where(sampled, measured[rows], bits[rows] * ratio)
        return gecko

    def total_elements(self):
        return int(sum(self._elements))

    def total_bits(self):
        _, _, bits = self._columns()
        return int(bits.sum())

    def ratio_fp32(self):
        """Return FP32 bits of the recorded instances divided by their stored bits."""
        return FP32_BITS * self.total_elements() / self._nonzero_total()

    def ratio_bf16(self):
        """Return BF16 bits of the recorded instances divided by their stored bits."""
        return BF16_BITS * self.total_elements() / self._nonzero_total()

    def gecko_instances(self):
        """Return the number of records whose Gecko size was measured."""
        return sum(bits >= 0 for bits in self._gecko_bits)

    def total_gecko_bits(self):
        """Return the Gecko bits of the run: measured sizes plus estimates (SPEC.md F4)."""
        ids, _, bits = self._columns()
        return float(self._gecko_column(ids, bits).sum())

    def ratio_fp32_gecko(self):
        """Return FP32 bits of the recorded instances divided by their Gecko bits."""
        return FP32_BITS * self.total_elements() / self._gecko_total()

    def ratio_bf16_gecko(self):
        """Return BF16 bits of the recorded instances divided by their Gecko bits."""
        return BF16_BITS * self.total_elements() / self._gecko_total()

    def _gecko_total(self):
        if self.gecko_instances() == 0:
            raise ValueError("footprint Gecko ratio: the ledger must contain at least one measured "
                             "Gecko size; got none (call record_gecko on sampled steps)")
        return self.total_gecko_bits()

    def _nonzero_total(self):
        total = self.total_bits()
        if total == 0:
            raise ValueError("footprint ratio: the ledger must hold at least one stored value; "
                             "got 0 stored bits (record instances before asking for ratios)")
        return total

    def tensors(self):
        """Return one :class:`TensorFootprint` per tensor, in first-recorded order."""
        ids, elements, bits = self._columns()
        count = len(self._names)
        instances = np.bincount(ids, minlength=count)
        element_sums = _sum_by(ids, elements, count)
        bit_sums = _sum_by(ids, bits, count)
        gecko_sums = np.bincount(ids, self._gecko_column(ids, bits), minlength=count)
        measured = np.bincount(ids, np.asarray(self._gecko_bits, np.int64) >= 0, minlength=count)
        largest = np.zeros(count, dtype=np.int64)
        np.maximum.at(largest, ids, elements)
        return [
            TensorFootprint(name, kind, int(instances[i]), int(element_sums[i]),
                            int(bit_sums[i]), float(gecko_sums[i]), int(measured[i]),
                            int(largest[i]))
            for i, (name, kind) in enumerate(self._names)
        ]

    def per_step_bits(self):
        """Return ``(steps, stored_bits, fp32_bits)``: one entry per recorded step, sorted."""
        steps = np.asarray(self._steps, dtype=np.int64)
        _, elements, bits = self._columns()
        unique_steps, inverse = np.unique(steps, return_inverse=True)
        stored = _sum_by(inverse, bits, len(unique_steps))
        fp32 = FP32_BITS * _sum_by(inverse, elements, len(unique_steps))
        return unique_steps, stored, fp32

    def per_step_gecko_bits(self):
        """Return ``(steps, gecko_bits)``: Gecko bits (float64) per recorded step, sorted."""
        ids, _, bits = self._columns()
        unique_steps, inverse = np.unique(np.asarray(self._steps, np.int64), return_inverse=True)
        gecko = np.bincount(inverse, self._gecko_column(ids, bits), minlength=len(unique_steps))
        return unique_steps, gecko


def _sum_by(ids, values, count):
    # Integer sums, because bincount's float64 weights would round totals past 2**53 bits.
    sums = np.zeros(count, dtype=np.int64)
    np.add.at(sums, ids, values)
    return sums
