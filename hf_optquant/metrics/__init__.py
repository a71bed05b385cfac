"""Diagnostics: outlier metrics (MMR, kurtosis) and the ABC error-propagation decomposition (R_L, gains)."""
from .correlate import LINEAR_METRICS, METRICS, correlate_runs, correlation, load_run
from .decomposition import NORMS, GainAccumulator, abc_from_sums, abc_sums, abc_vectors, gain_from_sums, gain_sums
from .diagnose import MODULE_SETS, diagnose_model_dir, diagnose_models, model_stages, module_selector
from .engine import ABCEngine, Stage, outlier_sites
from .outlier_stats import (
                            OUTLIER_METRICS,
                            OUTLIER_SITES,
                            OutlierAccumulator,
                            aggregate_layers,
                            excess_kurtosis,
                            mmr_per_token,
                            outlier_batch_stats,
                            weight_stats,
)
from .settings import DiagnoseConfig

__all__ = ["METRICS", "LINEAR_METRICS", "correlate_runs", "correlation", "load_run", "NORMS",
           "abc_from_sums", "abc_sums", "abc_vectors", "GainAccumulator", "gain_from_sums", "gain_sums", "MODULE_SETS",
           "diagnose_model_dir", "DiagnoseConfig", "diagnose_models", "model_stages", "module_selector", "ABCEngine", "Stage",
           "outlier_sites", "OUTLIER_METRICS", "OUTLIER_SITES", "OutlierAccumulator", "aggregate_layers",
           "excess_kurtosis", "mmr_per_token", "outlier_batch_stats", "weight_stats"]
