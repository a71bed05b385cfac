"""The paper's reference numbers, in one place: what reports and cards show beside our own measurements.

"Beyond Outliers: A Study of Optimizers Under Quantization", Vlassis, Ashkboos, Volkova, Hoefler, Alistarh
(arXiv 2509.23500, ICLR 2026). Each constant says which of the paper's results it is and which section of
docs/method.md describes the method behind it. The values were transcribed from the paper's result tables
and checked one by one against the project's method notes. They are shown beside our measurements, never
asserted: at the sizes a CPU trains, a study may or may not reproduce them (docs/method.md section 9).
"""
from __future__ import annotations

__all__ = ["PAPER_ARXIV", "CITATION", "PAPER_FP_ACC", "PAPER_PTQ_ACC", "PAPER_QAT_DROP", "PAPER_RHO",
           "PAPER_CORRELATIONS", "PAPER_CORRELATION_TARGET"]

PAPER_ARXIV = "2509.23500"
CITATION = """@inproceedings{vlassis2026beyond,
  title     = {Beyond Outliers: A Study of Optimizers Under Quantization},
  author    = {Vlassis and Ashkboos and Volkova and Hoefler and Alistarh},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2026},
  eprint    = {2509.23500},
  archivePrefix = {arXiv}
}"""

# Full-precision baselines of the QAT comparison: mean zero-shot acc_norm (%) over PIQA, HellaSwag and
# ARC-Easy, size -> optimizer: the full-precision column of the paper's QAT results (docs/method.md section 5).
PAPER_FP_ACC = {
    "350M": {"adamw": 56.58, "muon": 58.08, "shampoo": 56.51},
    "760M": {"adamw": 63.90, "muon": 64.63, "shampoo": 63.05},
    "1.5B": {"adamw": 67.93, "muon": 69.19, "shampoo": 68.16},
}
# The paper's PTQ results: W4A4 RTN at the Common Loss, mean zero-shot accuracy (%), size -> optimizer
# (docs/method.md sections 3-4). The paper has no PSGD, Scion or SOAP model at 1.5B.
PAPER_PTQ_ACC = {
    "350M": {"adamw": 49.23, "muon": 47.42, "psgd": 50.09, "scion": 49.80, "shampoo": 53.93, "soap": 49.08},
    "760M": {"adamw": 59.22, "muon": 50.00, "psgd": 52.11, "scion": 53.74, "shampoo": 59.26, "soap": 46.22},
    "1.5B": {"adamw": 62.51, "muon": 47.75, "shampoo": 63.88},
}
# The paper's QAT results: relative accuracy drop (%) of QuEST W4A4, trained from scratch, against full
# precision, size -> optimizer (docs/method.md section 5).
PAPER_QAT_DROP = {
    "350M": {"adamw": -3.43, "muon": -4.98, "shampoo": -2.64},
    "760M": {"adamw": -2.63, "muon": -3.57, "shampoo": -0.46},
    "1.5B": {"adamw": -1.63, "muon": -2.11, "shampoo": -1.20},
}
# The paper's scaling fits: parameter efficiency rho of 4-bit QAT per optimizer, L = A' / (N rho)^alpha + E
# (docs/method.md section 8).
PAPER_RHO = {"adamw": 0.863, "muon": 0.852, "psgd": 0.739, "scion": 0.856, "shampoo": 0.879, "soap": 0.822}
# The paper's outlier-metric finding: Pearson correlation across optimizers at 760M of each metric with
# post-PTQ accuracy (docs/method.md sections 6-7). Against a loss increase instead of accuracy the signs flip.
PAPER_CORRELATIONS = {"mmr": 0.62, "kurtosis": 0.70, "r_l": -0.89}
PAPER_CORRELATION_TARGET = "post-PTQ zero-shot accuracy (760M)"
