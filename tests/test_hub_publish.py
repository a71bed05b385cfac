"""Publishing against a real HTTP server on 127.0.0.1 speaking the Hub API (tests/hub_server.py),
read back by plain transformers / datasets / huggingface_hub in a fresh process."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap

import pandas as pd
import pytest
import torch
from hub_fixtures import PYTHON, TOKEN, client_env, hub_env, result_rows, write_eval, write_run_dir, write_study_dir  # noqa: F401
from hub_server import FakeHub

from hf_optquant.cli import main

CONSUMER = textwrap.dedent(r"""
    import json, re, sys
    import torch
    from datasets import load_dataset
    from huggingface_hub import ModelCard

    spec = json.loads(sys.argv[1])
    out = {}
    card = ModelCard.load(spec["model_repo"])
    out["eval_results"] = [{"dataset_type": r.dataset_type, "metric_type": r.metric_type,
                            "task_name": r.task_name, "value": r.metric_value} for r in card.data.eval_results]
    out["tags"] = card.data.tags
    # Run the card's own how-to-load snippet: plain transformers, nothing else.
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    ns = {}
    exec(snippet, ns)
    with torch.no_grad():
        out["logits"] = ns["model"].eval()(torch.tensor(spec["ids"])).logits.tolist()
    for key, rev in spec["revisions"].items():
        ds = load_dataset(spec["data_repo"], split="train", revision=rev)
        out[key] = ds.to_pandas().to_json(orient="records")
    out["hf_optquant_imported"] = any(m.split(".")[0] == "hf_optquant" for m in sys.modules)
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, trained_tiny_dir):
    from hf_optquant.ptq import PTQConfig, run_ptq

    root = tmp_path_factory.mktemp("hub_artefacts")
    run = write_run_dir(trained_tiny_dir, root / "run-adamw")
    base = write_eval(run, val_loss=5.25, accs={"piqa": 0.55, "arc_easy": 0.41})
    ckpt = run_ptq(str(run), str(root / "ptq-rtn-w4a4"), PTQConfig(method="rtn", w_bits=4, a_bits=4))
    ev = write_eval(ckpt, val_loss=5.61, accs={"piqa": 0.52, "arc_easy": 0.37}, baseline=run, base=base)
    rows1 = result_rows("s1", ["s1-a", "s1-b", "s1-c"], seed=1)
    rows2 = result_rows("s2", ["s1-c", "s2-a", "s2-b"], seed=2)  # s1-c re-run: replaces the old row
    return {"run": run, "ckpt": ckpt, "eval": ev, "rows1": rows1, "rows2": rows2,
            "study1": write_study_dir(root / "study1", "s1", rows1),
            "study2": write_study_dir(root / "study2", "s2", rows2, fits=True)}


@pytest.fixture
def hub(tmp_path):
    with FakeHub(tmp_path / "hub_store", token=TOKEN, lifetime_s=300) as h:
        yield h


def _publish(capsys, path, repo, hub, *extra):
    rc = main(["publish", str(path), "--repo-id", repo, "--endpoint", hub.url, *extra])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_publish_checkpoint_and_study_then_load_in_fresh_process(hub_env, hub, artefacts, capsys, caplog, tmp_path):
    rc, log1 = _publish(capsys, artefacts["ckpt"], "tester/tiny-adamw-rtn-w4a4", hub)
    assert rc == 0, log1
    files = hub.files("tester/tiny-adamw-rtn-w4a4")
    assert {"config.json", "model.safetensors", "quantization_record.json", "eval.json", "README.md",
            "parent_run.json", "tokenizer.json"} <= set(files)
    # LFS went through the batch API + PUT; the commit referenced it (not inlined).
    assert any(m == "PUT" and p.startswith("/_lfs/") for m, p, s in hub.requests)

    rc, log2 = _publish(capsys, artefacts["study1"], "tester/results", hub)
    assert rc == 0, log2
    rev1 = hub.history("tester/results", "dataset")[0]
    rc, log3 = _publish(capsys, artefacts["study2"], "tester/results", hub)
    assert rc == 0, log3
    assert "+2 kept" in log3  # s1-a, s1-b kept; s1-c replaced by study 2's row

    ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    spec = {"model_repo": "tester/tiny-adamw-rtn-w4a4", "data_repo": "tester/results", "ids": ids.tolist(),
            "revisions": {"rows_v1": rev1, "rows_v2": "main"}}
    proc = subprocess.run([PYTHON, "-c", CONSUMER, json.dumps(spec)], capture_output=True, text=True,
                          env=client_env(hub, tmp_path / "consumer_home"), cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert got["hf_optquant_imported"] is False

    # 1. Same logits as the local checkpoint.
    from transformers import AutoModelForCausalLM

    local = AutoModelForCausalLM.from_pretrained(str(artefacts["ckpt"])).eval()
    with torch.no_grad():
        want = local(ids).logits
    torch.testing.assert_close(torch.tensor(got["logits"]), want, rtol=0, atol=1e-5)

    # 2. The model-index parses back to eval.json's numbers.
    ev = artefacts["eval"]
    res = {(r["dataset_type"], r["metric_type"]): r["value"] for r in got["eval_results"]}
    assert res[("ptb-text-only/ptb_text_only", "loss")] == pytest.approx(ev["val_loss"])
    assert res[("ptb-text-only/ptb_text_only", "ppl")] == pytest.approx(ev["val_ppl"])
    assert res[("ybisk/piqa", "acc_norm")] == pytest.approx(ev["tasks"]["piqa"]["acc_norm"])
    assert res[("allenai/ai2_arc", "acc_norm")] == pytest.approx(ev["tasks"]["arc_easy"]["acc_norm"])
    assert res[("allenai/ai2_arc", "acc")] == pytest.approx(ev["tasks"]["arc_easy"]["acc"])
    assert {"hf-optquant", "adamw", "rtn", "w4a4"} <= set(got["tags"])

    # 3. load_dataset returns the published rows; the append kept old rows, replaced s1-c, no duplicates.
    v1 = pd.DataFrame(json.loads(got["rows_v1"]))
    v2 = pd.DataFrame(json.loads(got["rows_v2"]))
    assert sorted(v1["run_id"]) == ["s1-a", "s1-b", "s1-c"]
    assert sorted(v2["run_id"]) == ["s1-a", "s1-b", "s1-c", "s2-a", "s2-b"]
    assert v2["run_id"].is_unique
    by_id = {r["run_id"]: r for r in artefacts["rows1"]} | {r["run_id"]: r for r in artefacts["rows2"]}
    for _, row in v2.iterrows():
        src = by_id[row["run_id"]]
        assert row["study"] == src["study"] and row["optimizer"] == src["optimizer"]
        assert row["val_loss"] == pytest.approx(src["val_loss"]) and row["r_l"] == pytest.approx(src["r_l"])
    s1c_v1 = v1.set_index("run_id").loc["s1-c", "val_loss"]
    assert s1c_v1 == pytest.approx(by_id_first(artefacts["rows1"], "s1-c")["val_loss"])
    assert v2.set_index("run_id").loc["s1-c", "study"] == "s2"

    # 4. Both studies' fits and reports stay in the repo and the card.
    data_files = hub.files("tester/results", "dataset")
    assert {"studies/s1/fits/scaling.json", "studies/s2/fits/scaling.json", "studies/s1/report.md",
            "studies/s2/fits/scaling.png", "data/results.parquet"} <= set(data_files)
    card = data_files["README.md"].decode()
    assert "studies/s1/fits/scaling.json" in card and "studies/s2/fits/scaling.json" in card
    # Each study's fit renders with its plot, an image of a file published in the repo.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert sorted(images) == ["studies/s1/fits/scaling.png", "studies/s2/fits/scaling.png"]
    assert all(data_files[p].startswith(b"\x89PNG") for p in images)
    assert "increase %" in card and "nats per token" in card

    # 5. The token is nowhere: not in any published file, output or log line.
    for repo, rtype in (("tester/tiny-adamw-rtn-w4a4", "model"), ("tester/results", "dataset")):
        for name, content in hub.files(repo, rtype).items():
            assert TOKEN.encode() not in content, name
    assert TOKEN not in log1 + log2 + log3 + caplog.text + proc.stdout + proc.stderr
    assert "<redacted>" in files["parent_run.json"].decode()


def by_id_first(rows, run_id):
    return next(r for r in rows if r["run_id"] == run_id)


def test_private_repo_and_dry_run_is_exactly_the_upload(hub_env, hub, artefacts, capsys, tmp_path):
    dry = tmp_path / "dry"
    rc, log = _publish(capsys, artefacts["run"], "tester/private-run", hub, "--dry-run", str(dry))
    assert rc == 0 and hub.repos == {}, log  # a dry run contacts nobody
    rc, log = _publish(capsys, artefacts["run"], "tester/private-run", hub, "--private")
    assert rc == 0, log
    assert hub.repos[("model", "tester/private-run")].private
    files = hub.files("tester/private-run")
    assert "run.json" in files and "training_args.bin" not in files
    assert not any(f.startswith("checkpoint-") for f in files)
    written = {p.relative_to(dry).as_posix(): p.read_bytes() for p in dry.rglob("*") if p.is_file()}
    assert written == {k: v for k, v in files.items() if k != ".gitattributes"}


def _one_line_error(capsys, argv, code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code
    assert TOKEN not in err and "Traceback" not in err
    # Upload progress bars may precede it; the error itself is exactly one line, the last.
    errors = [line for line in err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(errors) == 1 and err.endswith(errors[0]), err
    return errors[0]


def test_bad_repo_id_and_missing_token(hub_env, hub, artefacts, capsys, monkeypatch):
    err = _one_line_error(capsys, ["publish", str(artefacts["run"]), "--repo-id", "tester/bad name!",
                                   "--endpoint", hub.url])
    assert "repo_id" in err and "bad name!" in err
    monkeypatch.delenv("HF_TOKEN")
    err = _one_line_error(capsys, ["publish", str(artefacts["run"]), "--repo-id", "tester/x", "--endpoint", hub.url])
    assert "token" in err and "HF_TOKEN" in err
    assert hub.repos == {}  # nothing was created


@pytest.mark.parametrize("status, field, code", [(401, "token", 2), (404, "endpoint", 2), (500, None, 3)])
def test_endpoint_refusals_are_one_line(hub_env, hub, artefacts, capsys, status, field, code):
    """A refusal of the input is a usage error (2); a server error is the environment's (3), naming the endpoint."""
    hub.fail("*", r".*", status, message=f"refused with {status}")
    err = _one_line_error(capsys, ["publish", str(artefacts["run"]), "--repo-id", "tester/refused",
                                   "--endpoint", hub.url], code)
    assert err.startswith(f"hf-optquant publish: error: {field or hub.url}: ") and str(status) in err


def test_offline_mode_is_a_clear_error(hub_env, hub, artefacts, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    err = _one_line_error(capsys, ["publish", str(artefacts["run"]), "--repo-id", "tester/x", "--endpoint", hub.url])
    assert "HF_HUB_OFFLINE" in err


@pytest.mark.parametrize("fault", ["commit", "lfs_put"])
def test_failed_upload_leaves_no_partial_commit(hub_env, hub, artefacts, capsys, fault):
    repo = "tester/atomic"
    rc, log = _publish(capsys, artefacts["run"], repo, hub)
    assert rc == 0, log
    before = hub.files(repo)
    history = hub.history(repo)
    # Second publish of a different model (the quantized one) to the same repo fails midway.
    if fault == "commit":  # every LFS object is uploaded, then the commit itself fails
        hub.fail("POST", r"/api/models/tester/atomic/commit/", 500, message="backend exploded")
    else:  # the upload of one LFS object fails (403 is not retried by the client)
        hub.fail("PUT", r"/_lfs/", 403, message="signature expired")
    err = _one_line_error(capsys, ["publish", str(artefacts["ckpt"]), "--repo-id", repo, "--endpoint", hub.url],
                          3 if fault == "commit" else 2)
    assert ("500" in err) if fault == "commit" else ("403" in err)
    assert hub.history(repo) == history
    assert hub.files(repo) == before  # all of the old files, none of the new ones
    if fault == "commit":
        assert any(m == "PUT" and p.startswith("/_lfs/") and s == 200 for m, p, s in hub.requests)
    hub.clear_faults()
    rc, log = _publish(capsys, artefacts["ckpt"], repo, hub)
    assert rc == 0, log
    after = hub.files(repo)
    assert "quantization_record.json" in after and after["model.safetensors"] != before["model.safetensors"]


def test_endpoint_without_xet_says_how_to_disable_it(hub_env, hub, artefacts, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)  # hf_xet is installed: the client tries Xet
    err = _one_line_error(capsys, ["publish", str(artefacts["run"]), "--repo-id", "tester/xet", "--endpoint", hub.url])
    assert "HF_HUB_DISABLE_XET=1" in err
    assert hub.history("tester/xet") and len(hub.history("tester/xet")) == 1  # created, nothing committed
