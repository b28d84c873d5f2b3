"""`hitkit demo`: every stage end to end on a reduced study, resuming after an interruption,
and skipping everything on a rerun."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest
import tomli_w
from click.testing import CliRunner

from hitkit.cli.main import cli
from hitkit.demo.run import STAGES, STATE_FILE, run_demo

pytestmark = pytest.mark.slow


def small_study(secret: Path) -> dict:
    """4 tiny models over 2 factors, 6 targets at 16 px, 20 steps, 6 places per HIT."""
    models = []
    for training in ("standard", "adversarial"):
        for augmentation in ("none", "crop-flip"):
            name = f"convnet-{training}-{augmentation}"
            models.append({
                "name": name, "arch": "tiny_convnet", "checkpoint": f"models/{name}.pt",
                "normalization": "none", "input_size": 16, "num_classes": 6,
                "factors": {"training": training, "augmentation": augmentation},
                "train": {"adversarial": training == "adversarial", "augmentation": augmentation,
                          "epochs": 1, "images": 64},
            })
    return {
        "study": {"id": "demo-test", "title": "reduced demo", "store": "iris",
                  "secret_file": str(secret), "seed": 0},
        "models": models,
        "targets": {"source": "shapes", "count": 6, "size": 16, "seed": 0},
        "seeds": {"count": 1, "kinds": [{"kind": "gaussian", "mean": 0.5, "scale": 0.1}]},
        "generation": {"steps": 20, "step_size": 0.5, "optimizer": "normalized-gd",
                       "schedule": "halving", "precision": "fp32", "batch_size": 12,
                       "finish_steps": 5, "distance_metric": "ssim", "losses": [
                           {"name": "reg_free", "kind": "reg_free"},
                           {"name": "tv", "kind": "regularized", "rep_weight": 10.0,
                            "tv": 0.0005}]},
        "survey": {"task": "2afc", "foil": "other-target", "trials_per_hit": 10,
                   "catch_per_hit": 2, "repeat_share": 0.2, "responses_per_iri": 6,
                   "reward": 1.0, "time_estimate_minutes": 5},
        "platform": {"kind": "local"},
        "quality": {"min_catch_accuracy": 0.67, "min_median_rt_ms": 300, "fast_rt_ms": 250,
                    "max_fast_share": 0.5, "max_side_bias": 0.9},
        "analysis": {"factors": ["training", "augmentation"], "lapse": "none",
                     "draws": 1000, "tune": 500, "chains": 4, "seed": 0},
    }


class Interrupt(KeyboardInterrupt):
    """Ctrl-C at the start of a stage."""


def mtimes(root: Path, patterns: list[str]) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for pattern in patterns for p in sorted(root.glob(pattern))}


def port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parsed.hostname, parsed.port)) == 0


def test_demo_help_has_an_example():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output and "hitkit demo --out" in result.output
    assert "demo" in CliRunner().invoke(cli, ["--help"]).output


def test_demo_refuses_a_folder_holding_another_study(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(tomli_w.dumps(small_study(tmp_path / "secret")))
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.toml").write_text("# another study\n")
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--config", str(config)])
    assert result.exit_code == 1 and "holds another study" in result.output
    (out / "study.toml").unlink()
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--config", str(config)])
    assert result.exit_code == 1 and "is not empty" in result.output


def test_demo_runs_every_stage_resumes_after_an_interruption_and_skips_when_done(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(tomli_w.dumps(small_study(tmp_path / "secret")))
    out = tmp_path / "demo-study"
    names = [s.name for s in STAGES]

    # 1. Ctrl-C as the simulated participants are about to start
    lines: list[str] = []

    def interrupt_at_simulate(name: str) -> None:
        if name == "simulate":
            raise Interrupt

    with pytest.raises(Interrupt):
        run_demo(out, config, echo=lines.append, before_stage=interrupt_at_simulate)
    state = json.loads((out / STATE_FILE).read_text())["stages"]
    before = names[:names.index("simulate")]
    assert all(state[n]["done"] and state[n]["seconds"] >= 0 for n in before)
    assert state["simulate"]["done"] is False
    assert not set(state) - set(before) - {"simulate"}
    # the survey server was started by the serve stage and stopped by the interruption
    url = next(re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
               for line in lines if "under uvicorn at" in line)
    assert not port_open(url)
    earlier = ["models/*.pt", "manifest.parquet", "iris/**/*.png", "proxy.csv", "trials.parquet"]
    made = mtimes(out, earlier)
    assert len([k for k in made if k.startswith("models/")]) == 4

    # 2. the rerun resumes at simulate: nothing before it is done again (serve restarts)
    lines.clear()
    result = run_demo(out, config, echo=lines.append)
    ran = [s.name for s in result.stages if not s.skipped]
    assert ran == ["serve", *names[names.index("simulate"):]]
    assert mtimes(out, earlier) == made
    assert any(line.startswith("[8/14] simulate ... ") and line.endswith(" s") for line in lines)

    # the stages' outputs
    manifest = pq.read_table(out / "manifest.parquet")
    assert manifest.num_rows == 4 * 6 * 2
    assert set(manifest.column("loss").to_pylist()) == {"reg_free", "tv"}
    kinds = set(pq.read_table(out / "trials.parquet").column("kind").to_pylist())
    assert kinds == {"main", "catch", "repeat"}
    responses = pq.read_table(out / "responses.parquet").to_pandas()
    per_participant = responses.groupby("participant")["excluded"].first()
    assert per_participant.any() and not per_participant.all()  # careless ones were excluded
    assert {"training", "augmentation"} <= set(responses.columns)
    assert json.loads((out / "analysis" / "summary.json").read_text())["gate_passed"]
    for name in ("effects.csv", "effects.md", "posterior.nc", "alignment.csv"):
        assert (out / "analysis" / name).is_file()
    assert list((out / "figures").glob("*.png")) and list((out / "figures").glob("*.pdf"))
    assert result.report == (out / "report.html").resolve() and result.report.is_file()
    contrasts = [line for line in result.headline if line.startswith(("training:", "augm"))]
    assert len(contrasts) == 2  # one pairwise contrast per factor
    assert all(" alignment +" in line for line in contrasts)  # stated the positive way round
    state = json.loads((out / STATE_FILE).read_text())["stages"]
    assert all(state[n]["done"] for n in names)

    # 3. a third run skips every stage, verifying outputs (through the command line)
    after = mtimes(out, ["**/*"])
    cli_result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--config", str(config)])
    assert cli_result.exit_code == 0, cli_result.output
    skipped = re.findall(r"^\[(\d+)/14\] (\S+) \.\.\. done before", cli_result.output, re.M)
    assert [name for _, name in skipped] == names
    assert "Report: " in cli_result.output and "Headline effects" in cli_result.output
    assert mtimes(out, ["**/*"]).keys() == after.keys()
    assert mtimes(out, earlier) == made

    # 4. a deleted output is noticed: that stage and every later one run again
    (out / "report.html").unlink()
    lines.clear()
    result = run_demo(out, config, echo=lines.append)
    assert [s.name for s in result.stages if not s.skipped] == ["report"]
    assert (out / "report.html").is_file()
