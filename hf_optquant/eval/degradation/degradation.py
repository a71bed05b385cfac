"""A local ``evaluate`` metric: quality before and after quantization, absolute and relative drop.

Load it offline by path: ``evaluate.load(hf_optquant.eval.DEGRADATION_METRIC)``.
"""
import datasets
import evaluate

_DESCRIPTION = "Degradation of a metric from a reference (full precision) to a prediction (quantized)."
_KWARGS = """
Args:
    predictions: metric values of the quantized models.
    references: metric values of their full-precision parents.
    higher_is_better: True for accuracy, False for loss or perplexity.
Returns:
    before, after (means), absolute (after - before), relative (absolute / before), and
    drop (the loss of quality, positive when quantization hurts).
"""


class Degradation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Vlassis et al., Beyond Outliers: A Study of Optimizers Under Quantization, arXiv 2509.23500",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references, higher_is_better=True):
        before = sum(references) / len(references)
        after = sum(predictions) / len(predictions)
        absolute = after - before
        relative = absolute / before if before else float("nan")
        return {"before": before, "after": after, "absolute": absolute, "relative": relative,
                "drop": -absolute if higher_is_better else absolute}
