"""benchmarks/gpu_check.py's CPU mode runs, so the GPU check script cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_cpu_mode_prints_every_case_with_the_real_path(capsys, monkeypatch):
    gpu_check = load(monkeypatch)
    assert gpu_check.main(["--cpu"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()
            if re.match(r"^(resnet50|cifar_resnet18|vgg16|densenet121)@\d+ ", line)}
    assert set(rows) == {"resnet50@32", "cifar_resnet18@16", "vgg16@32", "densenet121@32"}
    for line in rows.values():
        fields = line.split()
        assert fields[2] == "bf16"  # the mixed-precision path with its fp32 finish ran
        ratio = float(fields[10])  # bf16 IRIs' fp32 error over fp32 eager's
        assert 0.5 < ratio < 2.0 and "n/a (CPU)" in line
    assert "cifar_resnet18 n=8 +bar" in out and "H100 anchors" in out
    # the GPU cases are the ones the issue names, at the sizes it names
    assert [(c.arch, c.size) for c in gpu_check.GPU_CASES] == [
        ("resnet50", 224), ("cifar_resnet18", 32), ("vgg16", 224), ("densenet121", 224)]
