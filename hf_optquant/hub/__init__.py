"""Publishing to the Hugging Face Hub: model cards, the results dataset, scaling-fit cards."""
from .bundle import Bundle, build_model_bundle, build_study_bundle
from .cards import (
                    checkpoint_card,
                    dataset_card,
                    eval_results_from,
                    full_precision_card,
                    qat_card,
                    scaling_section,
)
from .publish import PublishConfig, PublishResult, publish, validate_repo_id
from .sources import Source, detect_source

__all__ = [
    "PublishConfig",
    "PublishResult",
    "publish",
    "validate_repo_id",
    "Bundle",
    "build_model_bundle",
    "build_study_bundle",
    "full_precision_card",
    "qat_card",
    "checkpoint_card",
    "dataset_card",
    "scaling_section",
    "eval_results_from",
    "Source",
    "detect_source",
]
