"""Shipped files: one copy inside the package, read with importlib.resources; a built wheel works
installed without ``-e`` (no source tree beside it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_optquant.errors import ConfigError
from hf_optquant.resources import RESOURCE_KINDS, resource_names, resource_path, resource_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", RESOURCE_KINDS)
def test_top_level_folders_are_copies_of_the_shipped_files(kind):
    shipped = ROOT / "hf_optquant" / "resources" / kind
    top = ROOT / kind
    assert shipped.is_dir() and not shipped.is_symlink(), f"{shipped} must be a real folder (a wheel copies files)"
    names = resource_names(kind)
    assert names and names == sorted(p.name for p in top.iterdir() if p.is_file()), \
        f"{top}/ and {shipped}/ list different files"
    for name in names:
        assert (top / name).read_bytes() == (shipped / name).read_bytes(), \
            f"{top / name} differs from {shipped / name}: edit the shipped one and copy it to {top}/"


def test_resource_helper_reads_text_and_paths_and_names_missing_files():
    assert "{{ card_data }}" in resource_text("hub_cards", "model_card.md")
    path = resource_path("trainer_configs", "study_tiny.yaml")
    assert path.is_file() and path.parent.name == "trainer_configs"
    with pytest.raises(ConfigError, match="shipped: .*study_tiny.yaml"):
        resource_text("trainer_configs", "nope.yaml")
    with pytest.raises(ConfigError, match="unknown resource folder"):
        resource_text("elsewhere", "x")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_wheel_installed_without_editable_runs_study_and_publish(tmp_path):
    """Build the wheel from a copy of the sources, install it (no -e) into a fresh venv that sees the
    installed dependencies, and use it from an unrelated folder with no PYTHONPATH."""
    from hub_fixtures import write_run_dir

    from hf_optquant.models import build_model

    t0 = time.time()
    src = tmp_path / "src"
    shutil.copytree(ROOT / "hf_optquant", src / "hf_optquant", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp_path / "dist"), str(src)])
    (wheel,) = (tmp_path / "dist").glob("hf_optquant-*.whl")
    venv = tmp_path / "venv"
    # --without-pip: the venv borrows the system pip (system site-packages), which installs into the venv.
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    py, cli = venv / "bin" / "python", venv / "bin" / "hf-optquant"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)])
    build_s = time.time() - t0

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    site = _run([str(py), "-c", "import hf_optquant, hf_optquant.resources as r; print(hf_optquant.__file__); "
                 "print(r.resource_path('trainer_configs', 'study_tiny.yaml'))"], cwd=work, env=env).split()
    assert all(Path(p).is_relative_to(venv) for p in site), f"not the wheel's copy: {site}"

    assert "--print-commands" in _run([str(cli), "study", "--help"], cwd=work, env=env)
    # The default study config loads (and validates) from the installed package.
    printed = _run([str(cli), "study", "--print-commands"], cwd=work, env=env)
    assert f"hf-optquant study {site[1]} --run adamw-tiny-1" in printed

    model = tmp_path / "model"
    build_model("tiny-1", vocab_size=300, seed=0).save_pretrained(model)
    run = write_run_dir(model, tmp_path / "run", optimizer="muon")
    out = _run([str(cli), "publish", str(run), "--repo-id", "me/tiny-muon", "--dry-run", str(tmp_path / "dry")],
               cwd=work, env=env)
    assert "dry run" in out
    card = (tmp_path / "dry" / "README.md").read_text()
    assert "muon-trained full-precision model" in card and "{{" not in card
    assert json.loads((tmp_path / "dry" / "run.json").read_text())["optimizer"] == "muon"
    print(f"wheel build+install {build_s:.1f} s, total {time.time() - t0:.1f} s")
