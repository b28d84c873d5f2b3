"""`hitkit generate` / `hitkit proxy`: manifest, PNGs, resume, torchrun sharding, S3, training."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from generation.network import build_network
from generation.run import STATE_DIR, run_generation
from hitkit.cli.main import cli
from hitkit.study.config import load_study
from hitkit.study.manifest import MANIFEST
from hitkit.study.tables import read_table
from tests.generation.conftest import study_data, tiny_checkpoint, two_models, write_study

VOLATILE = {"created_at", "wall_time_s"}  # the only columns allowed to differ between runs


def stable(path: Path) -> dict:
    table = pq.read_table(path)
    return {name: table.column(name).to_pylist() for name in table.column_names
            if name not in VOLATILE}


def generate(root: Path, **kw):
    return run_generation(load_study(root), "cpu", progress=False, log=lambda _: None, **kw)


def test_generate_writes_exact_pngs_and_a_checked_manifest(small_study):
    summary = generate(small_study)
    assert summary.iris == 8 and summary.batches == 4 and summary.made == 4
    table = read_table(small_study / "manifest.parquet", MANIFEST, ["training"])
    rows = table.to_pylist()
    assert len({r["iri_id"] for r in rows}) == 8
    assert {r["training"] for r in rows} == {"standard", "adversarial"}
    study = load_study(small_study)
    nets = {m.name: build_network(m, study.resolve(m.checkpoint)).net for m in study.config.models}
    for r in rows:
        data = (small_study / r["uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        pixels = np.asarray(Image.open(io.BytesIO(data)))
        assert pixels.shape == (16, 16, 3) and r["width"] == r["height"] == 16
        target = np.asarray(Image.open(small_study / r["target_uri"]))
        # the manifest's error is the fp32 error of exactly these 8-bit pixels
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
        t = torch.from_numpy(target.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            f, ft = nets[r["model"]](x), nets[r["model"]](t)
        assert (f - ft).norm().item() / ft.norm().item() == pytest.approx(r["rep_error"], rel=1e-4)
        assert r["rep_error"] < 0.6 and r["distance_metric"] == "ssim"  # 30 steps: convergence is tested elsewhere
        assert r["precision"] == "fp32" and r["steps"] == 30 and r["layer"] == "flatten"
        assert (small_study / r["seed_uri"]).is_file()


def test_resume_after_a_simulated_kill_matches_an_uninterrupted_run(small_study, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(small_study, reference)
    generate(reference)

    class Killed(Exception):
        pass

    def kill_after_two(batch):
        if batch.index == 1:
            raise Killed

    with pytest.raises(Killed):
        generate(small_study, after_batch=kill_after_two)
    assert not (small_study / "manifest.parquet").exists()
    # no partial files: only finished row files and complete PNGs are there
    assert not list(small_study.rglob("*.tmp"))
    assert len(list((small_study / STATE_DIR / "rows").glob("*.parquet"))) == 2
    resumed = generate(small_study)
    assert (resumed.done_before, resumed.made, resumed.iris) == (2, 2, 8)
    assert stable(small_study / "manifest.parquet") == stable(reference / "manifest.parquet")
    again = generate(small_study)  # nothing left: no duplicates, same manifest
    assert (again.made, again.iris) == (0, 8)
    assert stable(small_study / "manifest.parquet") == stable(reference / "manifest.parquet")


@pytest.mark.slow
def test_torchrun_two_processes_equals_one_process(small_study, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(small_study, reference)
    generate(reference)
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "hitkit.cli",
         "generate", "--study", str(small_study), "--device", "cpu", "--no-progress"],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stderr
    assert stable(small_study / "manifest.parquet") == stable(reference / "manifest.parquet")


def test_s3_store_round_trip_against_moto(tmp_path, s3_server):
    import boto3
    import httpx

    root = tmp_path / "s3study"
    data = study_data(two_models(root))
    data["study"]["store"] = "s3://hitkit-test/run1"
    write_study(root, data)
    generate(root)
    rows = pq.read_table(root / "manifest.parquet").to_pylist()
    client = boto3.client("s3")
    listed = client.list_objects_v2(Bucket="hitkit-test", Prefix="run1/")["Contents"]
    # content-addressed: 8 IRIs + 4 targets + 1 shared seed
    assert len(listed) == 13
    from hitkit.study.store import open_store

    store = open_store("s3://hitkit-test/run1", root)
    for r in rows[:3]:
        assert r["uri"] == f"s3://hitkit-test/run1/{r['sha256']}.png"
        body = httpx.get(store.url(r["uri"], 600)).content  # presigned URL
        assert hashlib.sha256(body).hexdigest() == r["sha256"]
    assert "X-Amz-Expires=600" in store.url(rows[0]["uri"], 600)
    public = open_store("s3://hitkit-test/run1", root, public=True).url(rows[0]["uri"])
    assert public == f"{s3_server}/hitkit-test/run1/{rows[0]['sha256']}.png"
    # a second study with the same content uploads nothing new
    before = {o["Key"]: o["LastModified"] for o in listed}
    shutil.rmtree(root / STATE_DIR)
    generate(root)
    after = client.list_objects_v2(Bucket="hitkit-test", Prefix="run1/")["Contents"]
    assert {o["Key"]: o["LastModified"] for o in after} == before


def test_s3_store_errors_name_the_url(tmp_path, s3_server):
    from hitkit.study.store import StoreError, open_store

    store = open_store("s3://no-such-bucket/run1/", tmp_path)
    with pytest.raises(StoreError, match=r"^s3://no-such-bucket/run1/abc\.png: upload failed"):
        store.put("x.png", b"data", "abc")
    with pytest.raises(StoreError, match="names no bucket"):
        open_store("s3:///prefix", tmp_path)


def test_cli_generate_trains_a_demo_model_then_proxy_writes_a_file(tmp_path):
    root = tmp_path / "cli"
    models = two_models(root)
    models[1].pop("checkpoint")
    models[1]["checkpoint"] = "models/trained.pt"
    models[1]["train"] = {"adversarial": True, "augmentation": "crop-flip", "epochs": 1,
                          "images": 64, "epsilon": 0.5}
    write_study(root, study_data(models))
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--study", str(root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "training m1" in result.output and (root / "models" / "trained.pt").is_file()
    assert "8 IRIs" in result.output
    result = runner.invoke(cli, ["proxy", "--study", str(root), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    with (root / "proxy.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["m0", "m1"]
    for r in rows:
        assert 0 <= float(r["ci_low"]) <= float(r["alignment"]) <= float(r["ci_high"]) <= 1
        assert r["n_iris"] == "4" and r["metric"] == "ssim" and r["training"]
        assert -1 <= float(r["mean_margin"]) <= 1
    assert "paper's direction" in result.output


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    root = tmp_path / "bad"
    models = two_models(root)
    models[0]["arch"] = "resnet19"
    write_study(root, study_data(models))
    result = runner.invoke(cli, ["generate", "--study", str(root), "--no-progress"])
    assert result.exit_code != 0 and "unknown arch 'resnet19'" in result.output
    models = two_models(root)
    models[0]["layer"] = "layer7"
    write_study(root, study_data(models))
    result = runner.invoke(cli, ["generate", "--study", str(root), "--no-progress"])
    assert result.exit_code != 0 and "layer 'layer7' is not a node" in result.output
    models = two_models(root)
    tiny_checkpoint(root / "models" / "m0.pt", "tiny_resnet")  # the other architecture
    write_study(root, study_data(models))
    result = runner.invoke(cli, ["generate", "--study", str(root), "--no-progress"])
    assert result.exit_code != 0 and "does not fit arch 'tiny_convnet'" in result.output
    result = runner.invoke(cli, ["proxy", "--study", str(root)])
    assert result.exit_code != 0 and "manifest.parquet: no such file" in result.output
    data = study_data(two_models(root), distance_metric="lpips-vgg", distance_fallback="none")
    write_study(root, data)
    result = runner.invoke(cli, ["generate", "--study", str(root), "--no-progress"],
                           env={"TORCH_HOME": str(tmp_path / "empty-hub")})
    assert result.exit_code != 0 and "vgg16-397923af.pth" in result.output
