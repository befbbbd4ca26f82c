"""Optimizers as pure ``init``/``update`` pairs, and a helper that applies them to Tensors.

``update(grads, state, params)`` takes lists of arrays and returns ``(updates, new_state)``;
the new parameters are ``params[i] + updates[i]``. States are small NamedTuples, and the
update rules follow PyTorch's SGD, Adam and AdamW so results can be compared one to one.
The learning rate is a number or a schedule ``step -> lr`` (see ``numpyml.schedules``).
"""

from typing import Callable, NamedTuple

import math

import numpy as np


class Optimizer(NamedTuple):
    """A pair of pure functions: ``init(params) -> state``, ``update(grads, state, params)``."""

    init: Callable
    update: Callable
    learning_rate: Callable  # step -> lr, for logging


def _as_schedule(learning_rate):
    if callable(learning_rate):
        return learning_rate
    value = float(learning_rate)
    if value < 0:
        raise ValueError(f"optimizer: learning_rate must be non-negative; got {value}")
    return lambda step: value


class SGDState(NamedTuple):
    step: int  # updates applied so far
    momentum: tuple  # one velocity array per parameter (params' shapes), None before step 1


def sgd(learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    g' = g + weight_decay * p; v = momentum * v + g' (v = g' at the first step);
    d = g' + momentum * v with Nesterov, else v; the update is -lr * d.
    """
    schedule = _as_schedule(learning_rate)
    if nesterov and momentum <= 0:
        raise ValueError(f"sgd: Nesterov momentum needs momentum > 0; got {momentum}")

    def init(params):
        return SGDState(0, tuple(None for _ in params))

    def update(grads, state, params):
        lr = schedule(state.step)
        updates, velocities = [], []
        for g, p, v in zip(grads, params, state.momentum):
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                v = g if v is None else momentum * v + g
                g = g + momentum * v if nesterov else v
            updates.append(-lr * g)
            velocities.append(v)
        return updates, SGDState(state.step + 1, tuple(velocities))

    return Optimizer(init, update, schedule)


class AdamState(NamedTuple):
    step: int  # updates applied so far
    mu: tuple  # first-moment estimates, one per parameter, parameter shape and dtype
    nu: tuple  # second-moment estimates, one per parameter, parameter shape and dtype


def _adam(learning_rate, b1, b2, eps, weight_decay, decoupled):
    schedule = _as_schedule(learning_rate)

    def init(params):
        zeros = tuple(np.zeros_like(p) for p in params)
        return AdamState(0, zeros, zeros)

    def update(grads, state, params):
        step = state.step + 1
        lr = schedule(state.step)
        step_size = lr / (1 - b1 ** step)
        root_correction = math.sqrt(1 - b2 ** step)
        updates, mus, nus = [], [], []
        for g, p, mu, nu in zip(grads, params, state.mu, state.nu):
            if weight_decay and not decoupled:
                g = g + weight_decay * p
            mu = b1 * mu + (1 - b1) * g
            nu = b2 * nu + (1 - b2) * (g * g)
            update = -step_size * mu / (np.sqrt(nu) / root_correction + eps)
            if weight_decay and decoupled:
                update = update - lr * weight_decay * p
            updates.append(update.astype(p.dtype, copy=False))
            mus.append(mu)
            nus.append(nu)
        return updates, AdamState(step, tuple(mus), tuple(nus))

    return Optimizer(init, update, schedule)


def adam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Adam with bias correction and optional L2 weight decay (added to the gradient).

    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; the update is
    -lr * m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), as in PyTorch's Adam.
    """
    return _adam(learning_rate, b1, b2, eps, weight_decay, decoupled=False)


def adamw(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2):
    """Adam with decoupled weight decay: the update adds -lr * weight_decay * p."""
    return _adam(learning_rate, b1, b2, eps, weight_decay, decoupled=True)


OPTIMIZERS = {"sgd": sgd, "adam": adam, "adamw": adamw}


class ParameterOptimizer:
    """Apply an ``Optimizer`` to a list of parameter Tensors, reading their ``.grad``.

    Parameters without a gradient get a zero gradient, so the state stays aligned.
    """

    def __init__(self, optimizer, parameters):
        self.optimizer = optimizer
        self.parameters = list(parameters)
        self.state = optimizer.init([p.data for p in self.parameters])

    @property
    def learning_rate(self):
        """The learning rate that the next ``step()`` uses."""
        return self.optimizer.learning_rate(self.state.step)

    def step(self):
        grads = [np.zeros_like(p.data) if p.grad is None else p.grad for p in self.parameters]
        params = [p.data for p in self.parameters]
        updates, self.state = self.optimizer.update(grads, self.state, params)
        for parameter, value, update in zip(self.parameters, params, updates):
            parameter.data = value + update

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None
