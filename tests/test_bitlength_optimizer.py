"""The width optimizer ``adam_scalars`` takes Adam's steps bit for bit (SPEC.md Q7)."""

import numpy as np
import pytest

from numpyml import optim
from numpyml.engine import Tensor


def width_schedule(step):
    return 0.5 if step < 60 else 0.1


def run_widths(optimizer, steps=300):
    """Return the widths after each step, with gradients spread over many binades."""
    start = np.random.default_rng(0).uniform(1.0, 23.0, 16)
    widths = [Tensor(np.float64(value), requires_grad=True) for value in start]
    wrapper = optim.ParameterOptimizer(optimizer, widths)
    rng = np.random.default_rng(1)
    history = []
    for step in range(steps):
        for width in widths:
            width.grad = np.asarray(rng.standard_normal() * 10.0 ** rng.integers(-12, 4))
        widths[3].grad = None if step % 7 == 0 else widths[3].grad  # a width without gradient
        widths[5].grad = np.asarray(0.0)
        wrapper.step()
        history.append([float(width.data) for width in widths])
    return np.array(history)


@pytest.mark.spec("Q7")
def test_adam_scalars_matches_adam():
    expected = run_widths(optim.adam(width_schedule))
    got = run_widths(optim.adam_scalars(width_schedule))
    assert got.shape == expected.shape
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))


@pytest.mark.spec("Q7")
def test_adam_scalars_state_holds_vectors():
    optimizer = optim.adam_scalars(0.5)
    params = [np.float64(3.0), np.float64(7.0)]
    state = optimizer.init(params)
    updates, state = optimizer.update([np.float64(1.0), np.float64(-2.0)], state, params)
    assert state.step == 1
    assert state.mu.shape == (2,)
    assert state.nu.dtype == np.float64
    # Adam's first step moves each parameter by the learning rate against its gradient.
    assert [float(u) for u in updates] == pytest.approx([-0.5, 0.5], rel=1e-6)


def test_adam_scalars_rejects_arrays():
    with pytest.raises(ValueError, match="adam_scalars: parameter 1 must be a 0-d float64"):
        optim.adam_scalars(0.5).init([np.float64(1.0), np.zeros(3)])
    with pytest.raises(ValueError, match="dtype float32"):
        optim.adam_scalars(0.5).init([np.float32(1.0)])
