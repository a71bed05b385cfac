"""Fitting one law to one group of points: grid of starts, L-BFGS from the best, leave-one-out intervals.

Recipe (Hoffmann et al. 2022; Besiroglu et al. 2024; the QuEST notebook): minimise the Huber loss of
log-residuals in the log-sum-exp parametrisation from a grid of starting points and keep the best local
optimum. The whole grid is scored in one vectorised call and L-BFGS-B runs from the ``n_starts`` best grid
points, which finds the same optimum as starting from every grid point at a fraction of the cost
(``n_starts=None`` restores the exhaustive search).

Intervals: each point is left out in turn and the law refitted (warm-started from the full fit and the best
grid points). The spread of those refits gives a jackknife standard error per parameter, computed in the
fitting space (log E, log A, log B, log rho; alpha, beta as they are) and mapped back, so intervals of
positive parameters stay positive. The held-out prediction errors give ``loo_rmse``. An optional
percentile bootstrap adds ``bootstrap_ci``.

Caveat: when the noise of the losses is well above ``huber_delta`` the fit behaves like least absolute
deviations, a non-smooth estimator for which the jackknife variance is unreliable (as for the median); the
LOO intervals are then indicative only, and ``bootstrap`` gives the better interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm
from tqdm.auto import tqdm

from ..errors import ConfigError
from .laws import LAWS, SPECS
from .objective import Points, objective

__all__ = ["FitSettings", "FitResult", "fit_points"]


@dataclass(kw_only=True)
class FitSettings:
    huber_delta: float = field(default=1e-3, metadata={"help": "Huber delta on log-residuals (1e-3 as Chinchilla)."})
    n_starts: int | None = field(default=64, metadata={
        "help": "L-BFGS runs from the best grid points; None runs from every grid point."})
    loo: bool = field(default=True, metadata={"help": "Leave-one-out refits for intervals and held-out error."})
    loo_starts: int = field(default=1, metadata={"help": "Grid starts per leave-one-out refit (plus the full fit)."})
    confidence: float = field(default=0.95, metadata={"help": "Coverage of the intervals."})
    bootstrap: int = field(default=0, metadata={"help": "Bootstrap resamples for extra percentile intervals (0: off)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap resampling."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over the refits."})

    def __post_init__(self):
        if not (isinstance(self.huber_delta, (int, float)) and self.huber_delta > 0):
            raise ConfigError("huber_delta", f"must be a positive number, got {self.huber_delta!r}", "use 1e-3")
        if self.n_starts is not None and (not isinstance(self.n_starts, int) or self.n_starts < 1):
            raise ConfigError("n_starts", f"must be a positive integer or None, got {self.n_starts!r}", "use 64")
        if not isinstance(self.loo_starts, int) or self.loo_starts < 0:
            raise ConfigError("loo_starts", f"must be an integer >= 0, got {self.loo_starts!r}", "use 1")
        if not 0 < self.confidence < 1:
            raise ConfigError("confidence", f"must be in (0, 1), got {self.confidence!r}", "use 0.95")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ConfigError("bootstrap", f"must be an integer >= 0, got {self.bootstrap!r}", "use 0 or 200")


@dataclass
class FitResult:
    law: object
    objective: float
    n_points: int
    ci: dict = field(default_factory=dict)
    loo_rmse: float | None = None
    loo_errors: list | None = None
    bootstrap_ci: dict | None = None

    def to_dict(self) -> dict:
        d = {"form": self.law.form, "formula": str(self.law), "params": self.law.params, "ci": self.ci,
             "loo_rmse": self.loo_rmse, "n_points": self.n_points, "objective": self.objective}
        if self.loo_errors is not None:
            d["loo_errors"] = self.loo_errors
        if self.bootstrap_ci is not None:
            d["bootstrap_ci"] = self.bootstrap_ci
        return d


# Box bounds (in the fitting space, unchanged by centring): E in [1e-3, 1e3], exponents in [0, 4], rho in
# [e^-5, e^5]; a and b are free. Points that no sensible law fits (a loss that rises with N, say) would
# otherwise send log E or an exponent off to infinity and L-BFGS would crawl after them for thousands of steps.
_BOUNDS = {"e": (np.log(1e-3), np.log(1e3)), "alpha": (0.0, 4.0), "beta": (0.0, 4.0)}


def _bounds(names: list[str]) -> list[tuple]:
    return [_BOUNDS.get(n, (-5.0, 5.0) if n.startswith("log_rho_") else (None, None)) for n in names]


def _minimize(form: str, theta0: np.ndarray, pts: Points, delta: float, bounds,
              maxiter: int = 3000) -> tuple[float, np.ndarray]:
    # scipy's stopping rule is relative to max(|f|, 1); the raw objective is ~n delta^2 / 2 (1e-5 here), so it
    # is minimised scaled to O(1), which makes ftol a true relative tolerance.
    scale = 1.0 / (len(pts) * delta * delta)
    lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
    hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])

    def fun(th):
        f, g = objective(form, th[None], pts, delta, grad=True)
        return f[0] * scale, g[0] * scale

    res = minimize(fun, np.clip(theta0, lo, hi), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9})
    return float(res.fun) / scale, res.x


def _centering(form: str, n_theta: int, pts: Points) -> tuple[Points, np.ndarray]:
    """Points with centred log N and log D, and the spec's matrix T with theta_centred = T @ theta.

    Centring decorrelates a from alpha (and b from beta), which otherwise differ in scale by log N ~ 20 and
    make L-BFGS crawl along a narrow valley."""
    mu_n, mu_d = float(pts.log_n.mean()), float(pts.log_d.mean())
    T = SPECS[form].centring(n_theta, mu_n, mu_d)
    return Points(pts.log_n - mu_n, pts.log_d - mu_d, pts.log_loss, pts.rho_index), T


_COARSE_ITERS, _POLISHED = 150, 4


def _best_fit(form: str, pts: Points, delta: float, starts: np.ndarray,
              names: list[str]) -> tuple[float, np.ndarray]:
    """Best local optimum from ``starts``: a short L-BFGS run from each, then the ``_POLISHED`` best run to
    convergence. With the Huber loss mostly in its linear part the objective is nearly piecewise linear and
    L-BFGS needs ~10^3 iterations to converge; spending them only on the promising starts is ~7x cheaper and
    finds the same optimum (benchmarks/scaling.py checks it against the exhaustive search)."""
    centred, T = _centering(form, starts.shape[1], pts)
    bounds = _bounds(names)
    cands = [T @ th0 for th0 in starts]
    if len(cands) > _POLISHED:
        coarse = [_minimize(form, th, centred, delta, bounds, maxiter=_COARSE_ITERS) for th in cands]
        order = np.argsort([f if np.isfinite(f) else np.inf for f, _ in coarse], kind="stable")
        cands = [coarse[i][1] for i in order[:_POLISHED]]
    best = (np.inf, starts[0])
    for th0 in cands:
        f, th = _minimize(form, th0, centred, delta, bounds)
        if np.isfinite(f) and f < best[0]:
            best = (f, np.linalg.solve(T, th))
    return best


def _ranked_starts(grid: np.ndarray, score: np.ndarray, k: int | None) -> np.ndarray:
    if k is None or k >= len(grid):
        return grid
    score = np.where(np.isfinite(score), score, np.inf)
    return grid[np.argsort(score, kind="stable")[:k]]


def _interval(center: np.ndarray, se: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    z = norm.ppf(0.5 + confidence / 2)
    return center - z * se, center + z * se


def _theta_ci(names: list[str], precisions: list[str], lo: np.ndarray, hi: np.ndarray) -> dict:
    """Intervals keyed like ``params``: E, A, B in natural units, rho nested per precision."""
    ci: dict = {}
    for i, name in enumerate(names):
        pair = [float(lo[i]), float(hi[i])]
        if name in ("e", "a", "b") or name.startswith("log_rho_"):
            pair = [float(np.exp(lo[i])), float(np.exp(hi[i]))]
        if name.startswith("log_rho_"):
            ci.setdefault("rho", {})[precisions[i - len(names) + len(precisions)]] = pair
        else:
            ci[{"e": "E", "a": "A", "b": "B"}.get(name, name)] = pair
    return ci


def fit_points(form: str, pts: Points, precisions: list[str], settings: FitSettings | None = None,
               *, label: str = "fit") -> FitResult:
    """Fit ``form`` to ``pts`` (rho index j refers to ``precisions[j]``)."""
    settings = settings or FitSettings()
    if form not in LAWS:
        raise ConfigError("form", f"unknown form {form!r}", f"use one of {', '.join(LAWS)}")
    law_cls = LAWS[form]
    names = law_cls.theta_names(precisions)
    # Repeated (N, D, precision) rows add no information: count distinct points.
    n = len(set(zip(pts.log_n.tolist(), pts.log_d.tolist(), pts.rho_index.tolist())))
    p = len(names)
    need = p + 1 if settings.loo else p
    if n < need:
        dup = f" ({len(pts) - n} repeated rows)" if n < len(pts) else ""
        raise ConfigError("points", f"{label}: {n} distinct points{dup} for a {form} fit with {p} parameters",
                          f"give at least {need} distinct (N, D) points (more sizes or runs), or use the reduced form")
    if np.ptp(pts.log_loss) == 0:
        raise ConfigError("loss", f"{label}: the loss is the same ({float(np.exp(pts.log_loss[0])):g}) in every row, "
                          "so the law's terms are undetermined", "give runs whose losses differ (check the table)")
    delta = settings.huber_delta
    grid = SPECS[form].start_grid(len(precisions))
    # Scored once per point: a leave-one-out ranking is then the total minus one column.
    grid_terms = objective(form, grid, pts, delta, per_point=True)
    grid_total = grid_terms.sum(axis=1)
    f_best, theta = _best_fit(form, pts, delta, _ranked_starts(grid, grid_total, settings.n_starts), names)
    result = FitResult(law=law_cls.from_theta(theta, precisions), objective=f_best, n_points=n)
    if settings.loo:
        thetas, errors = [], []
        for i in tqdm(range(n), desc=f"{label}: leave-one-out", leave=False, disable=not settings.progress):
            keep = np.arange(n) != i
            sub = pts.subset(keep)
            starts = np.vstack([theta[None], _ranked_starts(grid, grid_total - grid_terms[:, i], settings.loo_starts)])
            _, th_i = _best_fit(form, sub, delta, starts, names)
            thetas.append(th_i)
            law_i = law_cls.from_theta(th_i, precisions)
            prec = None if pts.rho_index[i] < 0 else precisions[pts.rho_index[i]]
            pred = law_i.predict(np.exp(pts.log_n[i]), np.exp(pts.log_d[i]), [prec or "full"])
            errors.append(float(np.ravel(pred)[0] - np.exp(pts.log_loss[i])))
        thetas = np.array(thetas)
        se = np.sqrt((n - 1) / n * ((thetas - thetas.mean(0)) ** 2).sum(0))
        result.ci = _theta_ci(names, precisions, *_interval(theta, se, settings.confidence))
        result.loo_errors = errors
        result.loo_rmse = float(np.sqrt(np.mean(np.square(errors))))
    if settings.bootstrap:
        rng = np.random.default_rng(settings.seed)
        boots = []
        for _ in tqdm(range(settings.bootstrap), desc=f"{label}: bootstrap", leave=False,
                      disable=not settings.progress):
            idx = rng.integers(0, n, n)
            boots.append(_best_fit(form, pts.subset(idx), delta, theta[None], names)[1])
        q = (1 - settings.confidence) / 2
        lo, hi = np.quantile(np.array(boots), [q, 1 - q], axis=0)
        result.bootstrap_ci = _theta_ci(names, precisions, lo, hi)
    return result
