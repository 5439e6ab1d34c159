"""The pieces of a fit loop every pack's training shares: seeding, optimiser, schedule, one step."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["adamw", "epoch_batches", "one_cycle", "optimise", "parameter_count", "quiet", "seed_torch"]


def seed_torch(seed: int, threads: int) -> np.random.Generator:
    """Set torch's threads and seed; the numpy generator of the same ``seed``."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def adamw(parameters: Any, learning_rate: float) -> Any:
    """AdamW with weight decay 1e-4 (every pack's classifier optimiser)."""
    import torch

    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=1e-4)


def one_cycle(optimiser: Any, learning_rate: float, total_steps: int, pct_start: float = 0.3) -> Any:
    """The one-cycle learning-rate schedule peaking at ``learning_rate``."""
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=total_steps,
                                               pct_start=pct_start)


def optimise(optimiser: Any, scheduler: Any, loss: Any) -> float:
    """One step: back-propagate ``loss``, step the optimiser and the schedule; the loss as a float."""
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    scheduler.step()
    return float(loss.detach())


def epoch_batches(rng: np.random.Generator, count: int, batch_size: int, steps: int) -> Iterator[np.ndarray]:
    """Indices of ``steps`` batches of one epoch over ``count`` items in a random order."""
    order = rng.permutation(count)
    for step in range(steps):
        yield order[step * batch_size:(step + 1) * batch_size]


def parameter_count(net: Any) -> int:
    """Trainable and frozen parameters of ``net``."""
    return int(sum(p.numel() for p in net.parameters()))


def quiet(log: Callable[[str], None] | None) -> Callable[[str], None]:
    """``log``, or a callback that drops every message."""
    return log or (lambda _message: None)
