"""Half log-SNR, ``lambda = log(alpha / sigma)``, for the solvers that step in it.

The exponential-integrator samplers (DPM++ SDE, 2M/3M SDE, SEEDS, ER-SDE, Euler CFG++) step in
lambda, and what lambda is depends on how the model adds noise (``run.ms``), as in ComfyUI's
``sigma_to_half_log_snr`` / ``half_log_snr_to_sigma`` / ``offset_first_sigma_for_snr``:

- a discrete (variance-exploding) model, ``x = x0 + sigma * noise``: ``alpha = 1`` and
  ``lambda = -log(sigma)``, so ``sigma = exp(-lambda)``;
- a flow-matching model (``ms.prediction == "flow"``, ComfyUI's CONST),
  ``x = (1 - sigma) x0 + sigma noise``: ``alpha = 1 - sigma`` and ``lambda = -logit(sigma)``,
  so ``sigma = sigmoid(-lambda)``. Lambda is infinite at sigma 1, where a flow schedule starts,
  so these samplers start a step later in time: a first sigma of 1 becomes
  ``ms.percent_to_sigma(1e-4)`` (the run's noise was already scaled at 1).

The other samplers work in the model's sigma as it is; the ancestral ones have their own
rectified-flow steps on a flow model (``solvers_sde``). The discrete forms are the exact
operations the solvers used before, so discrete results do not move by a bit.

>>> import torch
>>> from .flow_sampling import FlowSampling
>>> ms = FlowSampling(shift=3.0)
>>> round(float(half_log_snr(ms, torch.tensor(0.75))), 4)
-1.0986
>>> round(float(offset_first_sigma(ms, torch.tensor([1.0, 0.5]))[0]), 5)
0.99997
"""

from __future__ import annotations

from typing import Any

import torch

#: How far into the run (``percent_to_sigma``) a flow schedule's first sigma of 1 moves.
FIRST_SIGMA_PERCENT = 1e-4


def is_flow(ms: Any) -> bool:
    """Whether ``ms`` is a flow-matching model's sampling (ComfyUI's CONST prediction)."""
    return getattr(ms, "prediction", "") == "flow"


def half_log_snr(ms: Any, sigma: torch.Tensor) -> torch.Tensor:
    """``log(alpha / sigma)`` at noise level ``sigma``."""
    if is_flow(ms):
        return sigma.logit().neg()
    return sigma.log().neg()


def sigma_at(ms: Any, lam: torch.Tensor) -> torch.Tensor:
    """The noise level whose half log-SNR is ``lam`` (the inverse of ``half_log_snr``)."""
    if is_flow(ms):
        return lam.neg().sigmoid()
    return lam.neg().exp()


def offset_first_sigma(ms: Any, sigmas: torch.Tensor) -> torch.Tensor:
    """``sigmas`` with a flow schedule's first sigma of 1 (or more) moved to
    ``ms.percent_to_sigma(1e-4)``, where lambda is finite; any other schedule as it is."""
    if len(sigmas) <= 1 or not is_flow(ms) or sigmas[0] < 1:
        return sigmas
    moved = sigmas.clone()
    moved[0] = ms.percent_to_sigma(FIRST_SIGMA_PERCENT)
    return moved
