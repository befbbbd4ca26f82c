"""Optimizers as pure init/update pairs, the Tensor helper, and learning-rate schedules."""

import math

import numpy as np
import pytest

import numpyml as nm
from numpyml import optim, schedules


def run_steps(optimizer, params, grads_per_step):
    state = optimizer.init(params)
    for grads in grads_per_step:
        updates, state = optimizer.update(grads, state, params)
        params = [p + u for p, u in zip(params, updates)]
    return params, state


def test_sgd_plain_step():
    params, _ = run_steps(optim.sgd(0.1), [np.array([1.0, 2.0])], [[np.array([0.5, -1.0])]])
    np.testing.assert_allclose(params[0], [0.95, 2.1])


def test_sgd_momentum_and_weight_decay_match_hand_computation():
    g1, g2 = np.array([1.0]), np.array([2.0])
    params, _ = run_steps(optim.sgd(0.1, momentum=0.9, weight_decay=0.5), [np.array([1.0])], [[g1], [g2]])
    # step 1: g' = 1 + 0.5 * 1 = 1.5, v = 1.5, p = 1 - 0.15 = 0.85
    # step 2: g' = 2 + 0.5 * 0.85 = 2.425, v = 0.9 * 1.5 + 2.425 = 3.775, p = 0.85 - 0.3775
    np.testing.assert_allclose(params[0], [0.85 - 0.3775])


def test_sgd_nesterov_matches_hand_computation():
    params, _ = run_steps(optim.sgd(0.1, momentum=0.9, nesterov=True), [np.array([0.0])],
                          [[np.array([1.0])], [np.array([1.0])]])
    # step 1: v = 1, d = 1 + 0.9 = 1.9; step 2: v = 1.9, d = 1 + 1.71 = 2.71
    np.testing.assert_allclose(params[0], [-0.1 * (1.9 + 2.71)])


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        optim.sgd(0.1, nesterov=True)


def adam_reference(p, grads, lr, b1, b2, eps, weight_decay=0.0, decoupled=False):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if decoupled:
            p = p - lr * weight_decay * p
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_adam_matches_reference_formula(decoupled):
    grads = [0.3, -1.2, 0.7, 2.0]
    factory = optim.adamw if decoupled else optim.adam
    optimizer = factory(0.01, b1=0.8, b2=0.95, eps=1e-6, weight_decay=0.1)
    params, state = run_steps(optimizer, [np.array(1.5)], [[np.array(g)] for g in grads])
    expected = adam_reference(1.5, grads, 0.01, 0.8, 0.95, 1e-6, 0.1, decoupled)
    np.testing.assert_allclose(params[0], expected, rtol=1e-12)
    assert state.step == 4


def test_adam_keeps_float32():
    params = [np.ones(3, np.float32)]
    updates, state = optim.adam(1e-3).update([np.ones(3, np.float32)], optim.adam().init(params), params)
    assert updates[0].dtype == np.float32
    assert state.mu[0].dtype == np.float32


def test_update_leaves_inputs_unchanged():
    params = [np.ones(2)]
    grads = [np.full(2, 0.5)]
    optimizer = optim.sgd(0.1, momentum=0.9)
    state = optimizer.init(params)
    optimizer.update(grads, state, params)
    optimizer.update(grads, state, params)
    np.testing.assert_array_equal(params[0], [1.0, 1.0])
    np.testing.assert_array_equal(grads[0], [0.5, 0.5])
    assert state.step == 0


def test_parameter_optimizer_minimizes_quadratic():
    x = nm.Tensor(np.array([5.0, -3.0], np.float32), requires_grad=True)
    optimizer = optim.ParameterOptimizer(optim.adam(0.1), [x])
    for _ in range(300):
        optimizer.zero_grad()
        ((x - 1.0) ** 2).sum().backward()
        optimizer.step()
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-2)
    assert x.data.dtype == np.float32
    assert not x.data.flags.writeable


def test_parameter_optimizer_treats_missing_grad_as_zero():
    used = nm.Tensor([1.0], requires_grad=True)
    unused = nm.Tensor([2.0], requires_grad=True)
    optimizer = optim.ParameterOptimizer(optim.sgd(0.5), [used, unused])
    (used * 2).sum().backward()
    optimizer.step()
    assert used.data.tolist() == [0.0]
    assert unused.data.tolist() == [2.0]


def test_learning_rate_follows_schedule():
    x = nm.Tensor([0.0], requires_grad=True)
    optimizer = optim.ParameterOptimizer(optim.sgd(schedules.step_decay(1.0, 2, 0.5)), [x])
    seen = []
    for _ in range(5):
        seen.append(optimizer.learning_rate)
        x.grad = np.ones(1, np.float32)
        optimizer.step()
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_cosine_decay_endpoints():
    schedule = schedules.cosine_decay(1.0, 10, final_learning_rate=0.1)
    assert schedule(0) == 1.0
    assert schedule(5) == pytest.approx(0.55)
    assert schedule(10) == pytest.approx(0.1)
    assert schedule(50) == pytest.approx(0.1)


def test_linear_warmup_then_schedule():
    schedule = schedules.linear_warmup(schedules.step_decay(1.0, 3, 0.1), 4)
    values = [schedule(step) for step in range(8)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert values[4:7] == [1.0, 1.0, 1.0]
    assert values[7] == pytest.approx(0.1)


def test_negative_learning_rate_rejected():
    with pytest.raises(ValueError, match="learning_rate must be non-negative"):
        optim.adam(-1.0)
