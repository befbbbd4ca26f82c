"""Learning-rate schedules: functions from the step index (0 first) to a learning rate."""

import math


def constant(learning_rate):
    return lambda step: learning_rate


def step_decay(learning_rate, step_size, gamma=0.1):
    """lr * gamma ** (step // step_size), like PyTorch's StepLR counted in steps."""
    if step_size < 1:
        raise ValueError(f"step_decay: step_size must be at least 1; got {step_size}")
    return lambda step: learning_rate * gamma ** (step // step_size)


def cosine_decay(learning_rate, total_steps, final_learning_rate=0.0):
    """final + (lr - final) * (1 + cos(pi * t / T)) / 2, held at final after T steps."""
    if total_steps < 1:
        raise ValueError(f"cosine_decay: total_steps must be at least 1; got {total_steps}")

    def schedule(step):
        progress = min(step, total_steps) / total_steps
        return final_learning_rate + (learning_rate - final_learning_rate) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    return schedule


def linear_warmup(schedule, warmup_steps):
    """Scale ``schedule`` by (step + 1) / warmup_steps for the first ``warmup_steps`` steps.

    After the warm-up, ``schedule`` continues from its own step ``step - warmup_steps``.
    """
    if warmup_steps < 0:
        raise ValueError(f"linear_warmup: warmup_steps must be non-negative; got {warmup_steps}")
    if not callable(schedule):
        schedule = constant(schedule)

    def warmed(step):
        if step < warmup_steps:
            return schedule(0) * (step + 1) / warmup_steps
        return schedule(step - warmup_steps)

    return warmed
