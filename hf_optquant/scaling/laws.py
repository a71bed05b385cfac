"""Scaling-law forms: Chinchilla, Chinchilla with a parameter efficiency rho per precision, and the
reduced form used when D is a fixed multiple of N.

One ``LawSpec`` per form owns everything that depends on the form: which terms the law has, the layout of
the fitting vector ``theta`` (log-sum-exp parametrisation: ``e = log E``, ``a = log A``, ``b = log B``,
``log_rho_P``; exponents as they are), the grid of starting points and the centring of log N / log D. The
objective, the fitter and the law classes read the layout from the spec, so a new form is one new spec.
Precisions other than the reference one (full precision, rho = 1) each get one rho.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

__all__ = ["LawSpec", "SPECS", "ChinchillaLaw", "PrecisionLaw", "ReducedLaw", "LAWS", "FULL_PRECISION"]

FULL_PRECISION = "full"

# Hoffmann et al.'s grid of starting points (e, a and b, alpha and beta), and rho starting at 1 or 0.75.
_GRID = {"e": np.arange(-1.0, 1.01, 0.5), "a": np.arange(0.0, 25.1, 5.0), "b": np.arange(0.0, 25.1, 5.0),
         "alpha": np.arange(0.0, 2.01, 0.5), "beta": np.arange(0.0, 2.01, 0.5)}
_RHO_GRID = np.array([0.0, np.log(0.75)])


@dataclass(frozen=True)
class LawSpec:
    """What one form of the law has: a data term ``B / D^beta`` and/or one rho per non-reference precision."""

    form: str
    data_term: bool
    rho: bool

    @property
    def core(self) -> tuple[str, ...]:
        """Names of the non-rho entries of theta, in order."""
        return ("e", "a", "b", "alpha", "beta") if self.data_term else ("e", "a", "alpha")

    def index(self, name: str) -> int:
        return self.core.index(name)

    def theta_names(self, precisions) -> list[str]:
        return [*self.core, *(f"log_rho_{p}" for p in (precisions if self.rho else ()))]

    def start_grid(self, n_rho: int) -> np.ndarray:
        axes = [_GRID[n] for n in self.core] + [_RHO_GRID] * (n_rho if self.rho else 0)
        return np.array(list(itertools.product(*axes)))

    def centring(self, n_theta: int, mu_n: float, mu_d: float) -> np.ndarray:
        """T with theta_centred = T @ theta: ``a - alpha log N = (a - alpha mu_n) - alpha (log N - mu_n)``."""
        T = np.eye(n_theta)
        T[self.index("a"), self.index("alpha")] = -mu_n
        if self.data_term:
            T[self.index("b"), self.index("beta")] = -mu_d
        return T

    def split(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Columns of a batch ``theta`` (K, P) by name; ``log_rho`` is (K, n_rho)."""
        cols = {n: theta[:, i] for i, n in enumerate(self.core)}
        cols["log_rho"] = theta[:, len(self.core):]
        return cols


SPECS = {"chinchilla": LawSpec(form="chinchilla", data_term=True, rho=False),
         "precision": LawSpec(form="precision", data_term=True, rho=True),
         "reduced": LawSpec(form="reduced", data_term=False, rho=True)}

_PARAM = {"e": "E", "a": "A", "b": "B", "alpha": "alpha", "beta": "beta"}


def _sig4(x: float) -> str:
    # Four significant digits: how fitted parameters are printed.
    return f"{x:.4g}"


def _rho_of(rho: dict[str, float], precision) -> np.ndarray:
    precision = np.asarray(precision, dtype=object)
    return np.array([1.0 if p == FULL_PRECISION else rho[p] for p in precision.ravel()]).reshape(precision.shape)


@dataclass(kw_only=True)
class _Law:
    """``E + A / (N rho)^alpha [+ B / D^beta]``; which terms exist is the class's ``spec``."""

    spec: ClassVar[LawSpec]
    E: float
    A: float
    alpha: float
    B: float | None = None
    beta: float | None = None
    rho: dict[str, float] = field(default_factory=dict)

    @property
    def form(self) -> str:
        return self.spec.form

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(_PARAM[n] for n in self.spec.core)

    def predict(self, N, D=None, precision=None) -> np.ndarray:
        N = np.asarray(N, float)
        rho = 1.0 if precision is None or not self.spec.rho else _rho_of(self.rho, precision)
        out = self.E + self.A / (N * rho) ** self.alpha
        if self.spec.data_term:
            out = out + self.B / np.asarray(D, float) ** self.beta
        return out

    @property
    def params(self) -> dict:
        p = {k: float(getattr(self, k)) for k in self.names}
        return {**p, "rho": dict(self.rho)} if self.spec.rho else p

    def __str__(self) -> str:
        n = "(N rho)" if self.spec.rho else "N"
        s = f"{_sig4(self.E)} + {_sig4(self.A)} / {n}^{_sig4(self.alpha)}"
        s = f"L(N, D) = {s} + {_sig4(self.B)} / D^{_sig4(self.beta)}" if self.spec.data_term else f"L(N) = {s}"
        rho = ", ".join(f"rho_{p} = {_sig4(v)}" for p, v in self.rho.items())
        return s + (f"; {rho}" if rho else "")

    @classmethod
    def theta_names(cls, precisions) -> list[str]:
        return cls.spec.theta_names(precisions)

    @classmethod
    def from_theta(cls, theta, precisions):
        core = cls.spec.core
        kw = {_PARAM[n]: float(np.exp(v) if n in ("e", "a", "b") else v) for n, v in zip(core, theta)}
        if cls.spec.rho:
            kw["rho"] = {p: float(np.exp(r)) for p, r in zip(precisions, theta[len(core):])}
        return cls(**kw)

    def to_theta(self, precisions) -> np.ndarray:
        core = [np.log(getattr(self, _PARAM[n])) if n in ("e", "a", "b") else getattr(self, _PARAM[n])
                for n in self.spec.core]
        return np.array([*core, *(np.log(self.rho[p]) for p in (precisions if self.spec.rho else ()))])


@dataclass(kw_only=True)
class ChinchillaLaw(_Law):
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    spec: ClassVar[LawSpec] = SPECS["chinchilla"]


@dataclass(kw_only=True)
class PrecisionLaw(_Law):
    """L(N, D, P) = E + A / (N rho_P)^alpha + B / D^beta, rho = 1 in full precision."""

    spec: ClassVar[LawSpec] = SPECS["precision"]


@dataclass(kw_only=True)
class ReducedLaw(_Law):
    """L(N, P) = E + A' / (N rho_P)^alpha: the data term folded in, valid when D = k N for one k."""

    spec: ClassVar[LawSpec] = SPECS["reduced"]


LAWS = {"chinchilla": ChinchillaLaw, "precision": PrecisionLaw, "reduced": ReducedLaw}
