"""Bad PTQ input: one clear line, exit code 2, nothing written, an existing output untouched."""
from __future__ import annotations

import json

import pytest

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError
from hf_optquant.ptq import PTQConfig, run_optimum_gptq


def _one_error_line(err: str, field: str) -> None:
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]  # progress bars aside
    assert len(lines) == 1, err
    assert field in lines[0] and "fix:" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("argv, field", [
    (["--w-bits", "9"], "w_bits"),
    (["--w-bits", "1"], "w_bits"),
    (["--a-bits", "6"], "a_bits"),
    (["--granularity", "group:48"], "granularity"),  # 48 does not divide 64
    (["--granularity", "column"], "granularity"),
    (["--method", "awq"], "method"),
    (["--method", "gptq", "--n-calibration", "0"], "n_calibration"),
    (["--method", "gptq", "--calibration", "/nonexistent/calib.txt"], "calibration"),
    (["--targets", "no_such_proj"], "targets"),
])
def test_bad_input_one_line(argv, field, trained_tiny_dir, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["ptq", str(trained_tiny_dir), "--out", str(out), *argv]) == 2
    _one_error_line(capsys.readouterr().err, field)
    assert not out.exists() and not list(tmp_path.glob(".q.*"))


def test_not_a_causal_lm(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    assert main(["ptq", str(tmp_path / "junk"), "--out", str(tmp_path / "q")]) == 2
    _one_error_line(capsys.readouterr().err, "model")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
                                                   "num_attention_heads": 1, "intermediate_size": 8}))
    assert main(["ptq", str(bert), "--out", str(tmp_path / "q")]) == 2
    _one_error_line(capsys.readouterr().err, "model")
    # A path that does not exist is named as a missing directory, not as a malformed Hub id
    assert main(["ptq", str(tmp_path / "no" / "such"), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "model")
    assert "no directory" in err
    # A Hub id while offline (tests run with HF_HUB_OFFLINE=1): same one-line error
    assert main(["ptq", "someone/not-downloaded-model", "--out", str(tmp_path / "q")]) == 2
    _one_error_line(capsys.readouterr().err, "model")
    assert not (tmp_path / "q").exists()


def test_existing_out_never_half_overwritten(trained_tiny_dir, tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert main(["ptq", str(trained_tiny_dir), "--out", str(existing)]) == 2
    _one_error_line(capsys.readouterr().err, "out")
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    # with --overwrite but a failure mid-way (group size that does not divide): still untouched
    assert main(["ptq", str(trained_tiny_dir), "--out", str(existing), "--overwrite", "--granularity",
                 "group:48"]) == 2
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    # a successful --overwrite replaces it whole
    assert main(["ptq", str(trained_tiny_dir), "--out", str(existing), "--overwrite", "--w-bits", "8",
                 "--a-bits", "8"]) == 0
    assert (existing / "quantization_record.json").exists() and not (existing / "keep.txt").exists()
    assert json.loads((existing / "config.json").read_text())["quantization_config"]["format"] == "int-quantized"


def test_config_validation():
    with pytest.raises(ConfigError, match="damp"):
        PTQConfig(damp=1.5)
    with pytest.raises(ConfigError, match="block_size"):
        PTQConfig(block_size=0)
    with pytest.raises(ConfigError, match="a_bits"):
        PTQConfig(a_bits=2)
    assert PTQConfig(granularity="GROUP:64").scheme.granularity == "group:64"


def test_optimum_backend_without_extra_is_a_clear_error(trained_tiny_dir, tmp_path):
    from hf_optquant.ptq import optimum_available

    if optimum_available():
        pytest.skip("optimum and gptqmodel are installed")
    with pytest.raises(ConfigError, match="backend.*pip install"):
        run_optimum_gptq(str(trained_tiny_dir), str(tmp_path / "o"), PTQConfig(method="gptq", a_bits=None),
                         calibration_texts=["a b c"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, want", [([], True), (["--no-act-order"], False)])
def test_act_order_default_on_and_recorded(flag, want, trained_tiny_dir, tmp_path):
    out = tmp_path / "q"
    assert main(["ptq", str(trained_tiny_dir), "--method", "gptq", "--n-calibration", "4", "--seq-len", "32",
                 "--out", str(out), *flag]) == 0
    rec = json.loads((out / "quantization_record.json").read_text())
    assert rec["ptq_config"]["act_order"] is want
