"""Scaling-law fits per optimizer: Chinchilla, precision (rho) and reduced forms; Huber loss on
log-residuals, grid of starts, leave-one-out intervals."""
from .api import fit_results_table, fit_table
from .fit import FitResult, FitSettings, fit_points
from .laws import FULL_PRECISION, LAWS, SPECS, ChinchillaLaw, LawSpec, PrecisionLaw, ReducedLaw
from .objective import Points, huber, objective
from .table import groups, load_table, validate_table

__all__ = ["fit_results_table", "fit_table", "FitResult", "FitSettings", "fit_points", "FULL_PRECISION", "LAWS", "SPECS", "LawSpec",
           "ChinchillaLaw", "PrecisionLaw", "ReducedLaw", "Points", "huber", "objective", "groups", "load_table",
           "validate_table"]
