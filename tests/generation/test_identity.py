"""IRI ids: checkpoint content + exactly the pixel-changing settings; stale IRIs; devices."""

from __future__ import annotations

import os
import shutil
import tomllib

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from generation.checkpoints import checkpoint_sha256
from generation.run import GenerationError, Rank, choose_device, plan_batches, run_generation
from generation.seeds import seed_specs
from generation.settings import resolve_settings
from generation.targets import load_targets
from hitkit.cli.main import cli
from hitkit.study.config import load_study
from tests.generation.conftest import tiny_checkpoint, write_study


def generate(root, **kw):
    return run_generation(load_study(root), "cpu", progress=False, log=lambda _: None, **kw)


def ids(root, resolved: str | None = None, **changes) -> list[str]:
    """The planned ids, with [generation] `changes` and a resolved precision (default: this CPU's)."""
    config = load_study(root).config
    if changes:
        config = config.model_copy(update={
            "generation": config.generation.model_copy(update=changes)})
    precision = resolved or resolve_settings(config.generation, torch.device("cpu")).precision
    targets = [t.id for t in load_targets(config.targets, 16)]
    checkpoints = {m.name: checkpoint_sha256(root / m.checkpoint) for m in config.models}
    return [it.iri_id for b in plan_batches(config, targets, seed_specs(config.seeds), checkpoints,
                                            precision) for it in b.items]


def manifest(root) -> list[dict]:
    return pq.read_table(root / "manifest.parquet").to_pylist()


def test_manifest_only_and_speed_settings_never_change_ids(small_study):
    base = ids(small_study)
    assert len(set(base)) == len(base) == 8
    assert ids(small_study, distance_metric="ms-ssim", distance_fallback="none") == base
    assert ids(small_study, batch_size=1, compile="on") == base
    assert ids(small_study, steps=31) != base  # a pixel-changing setting does
    assert ids(small_study, mode="paper") != base


def test_precision_enters_resolved(small_study):
    # "auto" on this CPU is fp32: the same ids as an explicit fp32 study
    assert ids(small_study, precision="auto") == ids(small_study, precision="fp32")
    bf16 = ids(small_study, "bf16")
    assert set(bf16).isdisjoint(ids(small_study, "fp32"))
    assert ids(small_study, "bf16", finish_steps=5) != bf16  # finish_steps matters in bf16 only
    assert ids(small_study, "fp32", finish_steps=5) == ids(small_study, "fp32")


def test_changing_the_distance_metric_remakes_nothing_and_remeasures(small_study):
    generate(small_study)
    before = {r["iri_id"]: r for r in manifest(small_study)}
    data = tomllib.loads((small_study / "study.toml").read_text())
    data["generation"]["distance_metric"] = "ms-ssim"
    write_study(small_study, data)
    summary = generate(small_study)
    assert (summary.made, summary.done_before, summary.iris) == (0, 4, 8)
    after = {r["iri_id"]: r for r in manifest(small_study)}
    assert after.keys() == before.keys()
    for key, row in after.items():
        assert row["sha256"] == before[key]["sha256"] and row["distance_metric"] == "ms-ssim"
    assert any(row["dist_target"] != before[k]["dist_target"] for k, row in after.items())


def test_a_retrained_checkpoint_is_reported_and_replace_stale_redoes_only_its_iris(small_study):
    generate(small_study)
    before = {r["iri_id"]: r for r in manifest(small_study)}
    tiny_checkpoint(small_study / "models" / "m0.pt", "tiny_convnet", seed=7)  # same path, new weights
    with pytest.raises(GenerationError) as info:
        generate(small_study)
    message = str(info.value)
    assert "model m0" in message and "m0.pt changed since 4 IRI(s)" in message
    assert "--replace-stale" in message and "m1" not in message
    assert {r["iri_id"] for r in manifest(small_study)} == set(before)  # nothing was touched
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--study", str(small_study), "--no-progress",
                                 "--device", "cpu", "--replace-stale"])
    assert result.exit_code == 0, result.output
    assert "2 batch(es) made now, 2 before, 4 stale IRI(s) replaced" in result.output
    after = manifest(small_study)
    kept = [r for r in after if r["iri_id"] in before]
    assert {r["model"] for r in kept} == {"m1"} and len(kept) == 4
    assert all(r["model"] == "m0" for r in after if r["iri_id"] not in before)
    assert generate(small_study).made == 0  # and nothing is stale any more


def test_checkpoint_hash_is_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"a" * 1000)
    first = checkpoint_sha256(path)
    stat = path.stat()
    path.write_bytes(b"b" * 1000)  # same size; put the old mtime back: the cache answers
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert checkpoint_sha256(path) == first
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert checkpoint_sha256(path) != first


# ------------------------------------------------------------------- devices


@pytest.mark.parametrize("name,rank,gpus,expected", [
    ("cuda", Rank(3, 4, 1), 2, "cuda:1"),  # torchrun: LOCAL_RANK picks the GPU
    ("cuda", Rank(0, 1, 0), 1, "cuda:0"),
    ("auto", Rank(5, 8, 3), 2, "cuda:1"),
    ("auto", Rank(1, 2, 1), 0, "cpu"),
    ("cuda:1", Rank(0, 1, 0), 2, "cuda:1"),  # one process may name a GPU
    ("cpu", Rank(1, 2, 1), 4, "cpu"),
])
def test_device_per_rank(name, rank, gpus, expected):
    assert choose_device(name, rank, gpus) == torch.device(expected)


@pytest.mark.parametrize("name,rank,gpus,message", [
    ("cuda:0", Rank(1, 2, 1), 2, "under torchrun \\(WORLD_SIZE=2\\) would put every rank on GPU 0"),
    ("cuda", Rank(0, 1, 0), 0, "CUDA is not available here"),
    ("cuda:0", Rank(0, 1, 0), 0, "CUDA is not available here"),
    ("cuda", Rank(2, 3, 2), 2, "LOCAL_RANK 2 has no GPU"),
    ("cuda:3", Rank(0, 1, 0), 2, "has 2 GPU"),
    ("gpu", Rank(0, 1, 0), 1, "not a device"),
])
def test_device_errors(name, rank, gpus, message):
    with pytest.raises(GenerationError, match=message):
        choose_device(name, rank, gpus)


def test_cli_cuda_without_cuda_is_a_short_error(small_study, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["generate", "--study", str(small_study), "--device", "cuda",
                                      "--no-progress"])
    assert result.exit_code == 1
    assert "--device cuda: CUDA is not available here" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) <= 2


def _gloo_worker(rank: int, init: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    mine = str(choose_device("cuda", Rank.from_env(), cuda_count=2))
    gathered: list = [None, None]
    torch.distributed.all_gather_object(gathered, mine)
    try:
        choose_device("cuda:0", Rank.from_env(), cuda_count=2)
        refused = False
    except GenerationError:
        refused = True
    if rank == 0:
        with open(out, "w") as handle:
            handle.write(f"{','.join(gathered)};{refused}")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_map_to_their_local_gpus(tmp_path):
    out = tmp_path / "out.txt"
    torch.multiprocessing.spawn(_gloo_worker, args=(f"file://{tmp_path / 'store'}", str(out)),
                                nprocs=2, join=True)
    assert out.read_text() == "cuda:0,cuda:1;True"


def test_copied_study_with_the_same_checkpoints_shares_ids(small_study, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(small_study, other)
    (other / "models" / "m0.pt").rename(other / "models" / "renamed.pt")  # the same bytes
    data = tomllib.loads((other / "study.toml").read_text())
    data["models"][0]["checkpoint"] = "models/renamed.pt"
    write_study(other, data)
    assert ids(other) == ids(small_study)  # the path is not part of an id, the content is


def test_paper_mode_run_fourier_seed_and_first_batch_lambda(tmp_path):
    from generation.fourier import to_image
    from generation.loop import quantize
    from generation.seeds import fourier_seed
    from tests.generation.conftest import study_data, two_models

    root = tmp_path / "paper"
    losses = [{"name": "reg_free", "kind": "reg_free"},
              {"name": "fft+trans", "kind": "regularized", "rep_weight": 1.0, "fourier": True,
               "transforms": {"pad": 0, "jitter": 4, "scale": [0.9, 1.1], "rotate_degrees": 5}},
              {"name": "adv", "kind": "adversarial", "metric": "ssim", "lambda": "auto"}]
    data = study_data(two_models(root), steps=6, mode="paper", losses=losses)
    write_study(root, data)
    logged: list[str] = []
    summary = run_generation(load_study(root), "cpu", progress=False, log=logged.append)
    assert summary.iris == 24
    assert any("has no fake_relu in the reference code" in line for line in logged)
    rows = manifest(root)
    fft = [r for r in rows if r["loss"] == "fft+trans"]
    assert {r["seed_id"] for r in fft} == {"gaussian0-0-fourier"}
    assert {r["seed_id"] for r in rows if r["loss"] == "reg_free"} == {"gaussian0-0"}
    config = load_study(root).config
    spectrum = fourier_seed(seed_specs(config.seeds)[0], config.seeds, 16)
    expected = quantize(to_image(spectrum[None], 16, 16))[0]
    stored = torch.from_numpy(np.array(Image.open(root / fft[0]["seed_uri"]))).permute(2, 0, 1)
    assert torch.equal(stored.float() / 255, expected)
    # the paper's λ comes from the first batch: its members are part of the adversarial ids only
    base = ids(root)  # 2 models × 3 losses × 4 targets, in plan order
    other = ids(root, batch_size=2)
    changed = [i for i, (a, b) in enumerate(zip(base, other, strict=True)) if a != b]
    per_loss = len(base) // 6
    assert changed and all((i // per_loss) % 3 == 2 for i in changed)
