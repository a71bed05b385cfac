"""Huber loss of log-residuals under the log-sum-exp parametrisation, with its exact gradient.

``log L_pred = LSE(e, a - alpha (log N + r_P), b - beta log D)`` (terms present depend on the form), and the
objective is ``sum_i huber_delta(log L_pred_i - log L_i)``. Everything is vectorised over a batch of parameter
vectors so that a whole grid of starting points is scored in one call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .laws import SPECS, LawSpec

__all__ = ["Points", "huber", "objective"]


@dataclass(frozen=True)
class Points:
    """The data one fit sees: log N, log D, log L and, per point, the index of its rho (-1: reference)."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_loss: np.ndarray
    rho_index: np.ndarray

    def subset(self, keep: np.ndarray) -> Points:
        return Points(self.log_n[keep], self.log_d[keep], self.log_loss[keep], self.rho_index[keep])

    def __len__(self) -> int:
        return len(self.log_loss)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Same convention as ``scipy.special.huber``: r^2/2 inside delta, linear outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _terms(spec: LawSpec, theta: np.ndarray, pts: Points):
    """Log-space terms (K, n, T) and the effective log N (K, n) the A-term sees."""
    c = spec.split(theta)
    shift = np.zeros((theta.shape[0], len(pts)))
    if c["log_rho"].shape[1]:
        has = pts.rho_index >= 0
        shift[:, has] = c["log_rho"][:, pts.rho_index[has]]
    eff_n = pts.log_n[None, :] + shift
    t = np.empty((theta.shape[0], len(pts), 3 if spec.data_term else 2))
    t[..., 0] = c["e"][:, None]
    t[..., 1] = c["a"][:, None] - c["alpha"][:, None] * eff_n
    if spec.data_term:
        t[..., 2] = c["b"][:, None] - c["beta"][:, None] * pts.log_d[None, :]
    return t, eff_n


def objective(form: str | LawSpec, theta: np.ndarray, pts: Points, delta: float, *, grad: bool = False,
              per_point: bool = False):
    """Huber objective for a batch ``theta`` (K, P) -> (K,), and optionally its gradient (K, P).
    ``per_point`` returns the (K, n) terms of the sum instead (no gradient)."""
    spec = SPECS[form] if isinstance(form, str) else form
    theta = np.atleast_2d(np.asarray(theta, float))
    t, eff_n = _terms(spec, theta, pts)
    # hand-rolled log-sum-exp: scipy's costs more than the rest of the objective on a few hundred points
    m = t.max(axis=-1)
    ex = np.exp(t - m[..., None])
    total = ex.sum(axis=-1)
    lse = m + np.log(total)
    r = lse - pts.log_loss[None, :]
    value = huber(r, delta)
    if per_point:
        return value
    value = value.sum(axis=1)
    if not grad:
        return value
    hp = np.clip(r, -delta, delta)  # d huber / d r
    w = ex * (hp / total)[..., None]  # (K, n, T): d obj / d term
    g = np.zeros_like(theta)
    g[:, spec.index("e")] = w[..., 0].sum(1)
    g[:, spec.index("a")] = w[..., 1].sum(1)
    if spec.data_term:
        g[:, spec.index("b")] = w[..., 2].sum(1)
        g[:, spec.index("beta")] = -(w[..., 2] * pts.log_d[None, :]).sum(1)
    alpha_col, first_rho = spec.index("alpha"), len(spec.core)
    g[:, alpha_col] = -(w[..., 1] * eff_n).sum(1)
    for j in range(theta.shape[1] - first_rho):
        mask = pts.rho_index == j
        g[:, first_rho + j] = -(w[:, mask, 1] * theta[:, alpha_col, None]).sum(1)
    return value, g
