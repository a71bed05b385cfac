"""Scaling-law forms: Chinchilla, Chinchilla with a parameter efficiency rho per precision, and the
reduced form used when D is a fixed multiple of N.

Each law is a small dataclass with ``predict`` and its parameters in the paper's notation. The fitter works
on an unconstrained vector ``theta`` in log space (log-sum-exp parametrisation: ``e = log E``, ``a = log A``,
``b = log B``, ``r_P = log rho_P``); ``to_theta``/``from_theta`` convert. Precisions other than the reference
one (full precision, rho = 1) each get one rho.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChinchillaLaw", "PrecisionLaw", "ReducedLaw", "LAWS", "FULL_PRECISION"]

FULL_PRECISION = "full"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _rho_of(rho: dict[str, float], precision) -> np.ndarray:
    precision = np.asarray(precision, dtype=object)
    return np.array([1.0 if p == FULL_PRECISION else rho[p] for p in precision.ravel()]).reshape(precision.shape)


@dataclass(kw_only=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    form = "chinchilla"
    names = ("E", "A", "B", "alpha", "beta")

    def predict(self, N, D, precision=None) -> np.ndarray:
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    @property
    def params(self) -> dict:
        return {k: float(getattr(self, k)) for k in self.names}

    def __str__(self) -> str:
        return f"L(N, D) = {_g(self.E)} + {_g(self.A)} / N^{_g(self.alpha)} + {_g(self.B)} / D^{_g(self.beta)}"

    @staticmethod
    def theta_names(precisions) -> list[str]:
        return ["e", "a", "b", "alpha", "beta"]

    @classmethod
    def from_theta(cls, theta, precisions):
        e, a, b, alpha, beta = theta[:5]
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                   beta=float(beta))

    def to_theta(self, precisions) -> np.ndarray:
        return np.array([np.log(self.E), np.log(self.A), np.log(self.B), self.alpha, self.beta])


@dataclass(kw_only=True)
class PrecisionLaw:
    """L(N, D, P) = E + A / (N rho_P)^alpha + B / D^beta, rho = 1 in full precision."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rho: dict[str, float] = field(default_factory=dict)
    form = "precision"
    names = ("E", "A", "B", "alpha", "beta")

    def predict(self, N, D, precision=None) -> np.ndarray:
        N, D = np.asarray(N, float), np.asarray(D, float)
        rho = 1.0 if precision is None else _rho_of(self.rho, precision)
        return self.E + self.A / (N * rho) ** self.alpha + self.B / D ** self.beta

    @property
    def params(self) -> dict:
        return {**{k: float(getattr(self, k)) for k in self.names}, "rho": dict(self.rho)}

    def __str__(self) -> str:
        rho = ", ".join(f"rho_{p} = {_g(v)}" for p, v in self.rho.items())
        return (f"L(N, D) = {_g(self.E)} + {_g(self.A)} / (N rho)^{_g(self.alpha)} + {_g(self.B)} / "
                f"D^{_g(self.beta)}" + (f"; {rho}" if rho else ""))

    @staticmethod
    def theta_names(precisions) -> list[str]:
        return ["e", "a", "b", "alpha", "beta", *(f"log_rho_{p}" for p in precisions)]

    @classmethod
    def from_theta(cls, theta, precisions):
        e, a, b, alpha, beta = theta[:5]
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                   beta=float(beta), rho={p: float(np.exp(r)) for p, r in zip(precisions, theta[5:])})

    def to_theta(self, precisions) -> np.ndarray:
        return np.array([np.log(self.E), np.log(self.A), np.log(self.B), self.alpha, self.beta,
                         *(np.log(self.rho[p]) for p in precisions)])


@dataclass(kw_only=True)
class ReducedLaw:
    """L(N, P) = E + A' / (N rho_P)^alpha: the data term folded in, valid when D = k N for one k."""

    E: float
    A: float
    alpha: float
    rho: dict[str, float] = field(default_factory=dict)
    form = "reduced"
    names = ("E", "A", "alpha")

    def predict(self, N, D=None, precision=None) -> np.ndarray:
        N = np.asarray(N, float)
        rho = 1.0 if precision is None else _rho_of(self.rho, precision)
        return self.E + self.A / (N * rho) ** self.alpha

    @property
    def params(self) -> dict:
        return {**{k: float(getattr(self, k)) for k in self.names}, "rho": dict(self.rho)}

    def __str__(self) -> str:
        rho = ", ".join(f"rho_{p} = {_g(v)}" for p, v in self.rho.items())
        return f"L(N) = {_g(self.E)} + {_g(self.A)} / (N rho)^{_g(self.alpha)}" + (f"; {rho}" if rho else "")

    @staticmethod
    def theta_names(precisions) -> list[str]:
        return ["e", "a", "alpha", *(f"log_rho_{p}" for p in precisions)]

    @classmethod
    def from_theta(cls, theta, precisions):
        e, a, alpha = theta[:3]
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), alpha=float(alpha),
                   rho={p: float(np.exp(r)) for p, r in zip(precisions, theta[3:])})

    def to_theta(self, precisions) -> np.ndarray:
        return np.array([np.log(self.E), np.log(self.A), self.alpha, *(np.log(self.rho[p]) for p in precisions)])


LAWS = {"chinchilla": ChinchillaLaw, "precision": PrecisionLaw, "reduced": ReducedLaw}
