"""Loads tiny_mc.jsonl beside this file (lm-eval calls it through ``custom_dataset``)."""
import json
from pathlib import Path

import datasets


def load(**kwargs):
    rows = [json.loads(line) for line in (Path(__file__).parent / "tiny_mc.jsonl").read_text().splitlines() if line]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
