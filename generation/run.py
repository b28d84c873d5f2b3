"""`hitkit generate`: plan models × targets × seeds × losses, make the IRIs, write the manifest.

Work is cut into batches (one model and loss, up to batch_size target × seed
pairs, in plan order) whose content never depends on how many processes run.
Each finished batch is recorded as one small Parquet file of manifest rows under
`.generation/rows/`, written atomically after its PNGs; a restarted run skips the
batches recorded there, so a killed run resumes where it stopped, never leaves a
partial file and never duplicates a row. `manifest.parquet` is rebuilt from the
batch files in plan order, which is why a `torchrun` run (batches shared out by
rank) ends with the same manifest as a single process.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from generation.distances import perceptual_distance
from generation.image_tensors import to_pixels
from generation.loop import invert
from generation.network import build_network
from generation.objective import loss_distance
from generation.seeds import SeedSpec, other_target_index, seed_image, seed_specs
from generation.settings import resolve_settings
from generation.targets import Target, load_targets
from generation.train import TrainReport, train_demo_model
from hitkit.study.config import Study, StudyConfig
from hitkit.study.generation_config import ModelSpec
from hitkit.study.image_io import png_bytes, sha256_hex
from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
from hitkit.study.store import open_store
from hitkit.study.tables import write_table

STATE_DIR = ".generation"


class GenerationError(RuntimeError):
    """A generation problem; the message names the model, file or setting."""


# ------------------------------------------------------------------ planning


def _digest(obj: object, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def config_hash(config: StudyConfig) -> str:
    """SHA-256 of everything that changes an IRI's pixels (not the survey or analysis)."""
    relevant = {
        "models": [m.model_dump(mode="json", exclude={"factors"}) for m in config.models],
        "targets": config.targets.model_dump(mode="json"),
        "seeds": config.seeds.model_dump(mode="json"),
        "generation": config.generation.model_dump(mode="json", by_alias=True),
        "seed": config.study.seed,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def target_size(config: StudyConfig, model: ModelSpec) -> int:
    return config.targets.size or model.input_size


@dataclass(frozen=True)
class Item:
    target: int  # index into the target list
    seed: int  # index into seed_specs
    iri_id: str


@dataclass(frozen=True)
class Batch:
    key: str
    index: int  # position in the plan
    model: int  # index into config.models
    loss: int  # index into config.generation.losses
    items: tuple[Item, ...]


def iri_id(config: StudyConfig, model: ModelSpec, loss_json: str, target_id: str,
           seed_id: str) -> str:
    gen = config.generation.model_dump(mode="json", exclude={"losses"})
    return _digest({
        "model": model.model_dump(mode="json", exclude={"factors"}),
        "loss": loss_json, "target": target_id, "seed": seed_id,
        "size": target_size(config, model), "generation": gen, "study_seed": config.study.seed,
    })


def loss_json(loss: object) -> str:
    return json.dumps(loss.model_dump(mode="json", by_alias=True), sort_keys=True)


def plan_batches(config: StudyConfig, target_ids: list[str], seeds: list[SeedSpec]) -> list[Batch]:
    """The whole study as batches, in a fixed order: model, loss, target, seed."""
    batches: list[Batch] = []
    size = config.generation.batch_size
    for m, model in enumerate(config.models):
        for li, loss in enumerate(config.generation.losses):
            spec = loss_json(loss)
            items = [Item(t, s, iri_id(config, model, spec, target_ids[t], seeds[s].id))
                     for t in range(len(target_ids)) for s in range(len(seeds))]
            for start in range(0, len(items), size):
                chunk = tuple(items[start:start + size])
                key = _digest([it.iri_id for it in chunk], 24)
                batches.append(Batch(key, len(batches), m, li, chunk))
    return batches


# ------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Rank:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK (one process when unset)."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def _barrier(rank: Rank) -> None:
    if rank.world > 1:
        torch.distributed.barrier()


def _init_distributed(rank: Rank, device: torch.device) -> bool:
    if rank.world == 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend, rank=rank.rank, world_size=rank.world)
    return True


def choose_device(name: str | None, rank: Rank) -> torch.device:
    if name and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", rank.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()})"


def versions() -> str:
    import torchvision

    from hitkit import __version__

    return json.dumps({"hitkit": __version__, "torch": torch.__version__,
                       "torchvision": torchvision.__version__,
                       "python": platform.python_version()}, sort_keys=True)


# ---------------------------------------------------------------- the run


@dataclass
class RunSummary:
    batches: int = 0
    done_before: int = 0
    made: int = 0  # batches made by this process
    iris: int = 0  # rows in the manifest
    trained: list[TrainReport] = field(default_factory=list)
    manifest: Path | None = None
    distance_metric: str = ""


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_indexed(item: tuple[int, tuple[ModelSpec, Path]]) -> tuple[int, TrainReport]:
    index, (model, path) = item
    return index, train_demo_model(model, path)


def train_missing(study: Study, log: Callable[[str], None], workers: int = 1,
                  on_trained: Callable[[TrainReport], None] | None = None) -> list[TrainReport]:
    """Train every [[models]] entry whose checkpoint is missing and that has a [models.train].

    `workers` > 1 trains that many models at once, each in its own process (training
    uses one thread, so a machine with N cores trains N models in about the time of one).
    `on_trained` is called with each report as its model finishes.
    """
    todo: list[tuple[ModelSpec, Path]] = []
    for i, model in enumerate(study.config.models):
        path = checkpoint_path(study, model)
        if path.is_file():
            continue
        if model.train is None:
            raise GenerationError(f"models[{i}].checkpoint: {path} does not exist")
        todo.append((model, path))
    reports: list[TrainReport] = []

    def describe(model: ModelSpec, path: Path) -> str:
        return (f"{model.name} ({model.arch}, "
                f"{'adversarial' if model.train.adversarial else 'standard'}, "
                f"augmentation {model.train.augmentation}) -> {path}")

    def finished(model: ModelSpec, report: TrainReport, prefix: str) -> None:
        acc = f"accuracy {report.accuracy:.2f}"
        if report.robust_accuracy is not None:
            acc += f", robust accuracy {report.robust_accuracy:.2f} (L2 eps {model.train.epsilon})"
        log(f"{prefix}{acc}, {report.seconds:.1f} s")
        reports.append(report)
        if on_trained is not None:
            on_trained(report)

    if workers > 1 and len(todo) > 1:
        import multiprocessing

        workers = min(workers, len(todo))
        log(f"training {len(todo)} models, {workers} at a time")
        # spawn, not fork: the parent may already run torch's thread pools
        # workers ignore Ctrl-C: the parent stops them (no traceback from every worker)
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
        try:
            for i, report in pool.imap_unordered(_train_indexed, list(enumerate(todo))):
                model, path = todo[i]
                finished(model, report, f"trained {describe(model, path)}: ")
            pool.close()
        except BaseException:  # an error or Ctrl-C: stop the models in training too
            pool.terminate()
            raise
        finally:
            pool.join()
        return reports
    for model, path in todo:
        log(f"training {describe(model, path)}")
        finished(model, train_demo_model(model, path), "  ")
    return reports


def checkpoint_path(study: Study, model: ModelSpec) -> Path:
    if model.checkpoint:
        return study.resolve(model.checkpoint)
    return study.root / "models" / f"{model.name}.pt"


def _safe(name: str) -> str:
    return name.replace("/", "__").replace("\\", "__")


class _Images:
    """Targets and seeds at one size, stored once, with their URIs."""

    def __init__(self, study: Study, store, size: int) -> None:
        config = study.config
        root = study.resolve(config.targets.path) if config.targets.path else None
        self.targets: list[Target] = load_targets(config.targets, size, root)
        self.seeds = seed_specs(config.seeds)
        self.shared = {s.id: seed_image(s, config.seeds, size, study.resolve)
                       for s in self.seeds if not s.per_target}
        self.size, self.store = size, store
        self.uris: dict[str, str] = {}

    def _put(self, name: str, image: torch.Tensor) -> str:
        if name not in self.uris:
            data = png_bytes(to_pixels(image))
            self.uris[name] = self.store.put(name, data, sha256_hex(data))
        return self.uris[name]

    def target_uri(self, t: int) -> str:
        return self._put(f"targets/{_safe(self.targets[t].id)}-{self.size}px.png",
                         self.targets[t].image)

    def seed(self, s: int, t: int) -> tuple[torch.Tensor, str]:
        spec = self.seeds[s]
        if spec.per_target:
            other = other_target_index(spec, t, len(self.targets))
            return self.targets[other].image, self.target_uri(other)
        return self.shared[spec.id], self._put(f"seeds/{spec.id}-{self.size}px.png",
                                               self.shared[spec.id])


def _row_file(study: Study, batch: Batch) -> Path:
    return study.root / STATE_DIR / "rows" / f"{batch.key}.parquet"


def _make_batch(study: Study, batch: Batch, net, layer: str, images: _Images, device,
                distance, metric: str, objective_distance, settings_for, chash: str, vers: str,
                dev_label: str) -> pa.Table:
    config = study.config
    model = config.models[batch.model]
    loss = config.generation.losses[batch.loss]
    targets = torch.stack([images.targets[it.target].image for it in batch.items]).to(device)
    seeds = torch.stack([images.seed(it.seed, it.target)[0] for it in batch.items]).to(device)
    seed_int = int(_digest([config.study.seed, batch.key], 8), 16)
    settings = settings_for(seed_int, f"{model.name} · {loss.name}")
    start = time.perf_counter()
    result = invert(net, targets, seeds, loss, settings, objective_distance)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    with torch.no_grad():
        made = result.images.to(device)
        d_target = distance(made, targets).double().cpu().tolist()
        d_seed = distance(made, seeds).double().cpu().tolist()
    precision = "bf16+fp32-finish" if settings.precision == "bf16" else "fp32"
    now = datetime.now(UTC)
    rows = []
    for i, it in enumerate(batch.items):
        data = png_bytes(result.pixels[i].numpy())
        digest = sha256_hex(data)
        uri = images.store.put(f"{_safe(model.name)}/{_safe(loss.name)}/{it.iri_id}.png",
                               data, digest)
        target = images.targets[it.target]
        spec = images.seeds[it.seed]
        row = {
            "iri_id": it.iri_id, "model": model.name, "arch": model.arch, "layer": layer,
            "loss": loss.name, "loss_kind": loss.kind, "loss_spec": loss_json(loss),
            "target_id": target.id, "target_uri": images.target_uri(it.target),
            "seed_id": spec.id, "seed_kind": spec.kind.kind,
            "seed_uri": images.seed(it.seed, it.target)[1],
            "uri": uri, "sha256": digest, "width": images.size, "height": images.size,
            "rep_error": float(result.rep_error[i]), "dist_target": d_target[i],
            "dist_seed": d_seed[i], "distance_metric": metric, "steps": settings.steps,
            "precision": precision, "device": dev_label, "wall_time_s": wall,
            "config_hash": chash, "versions": vers, "created_at": now,
        }
        row.update({f: model.factors[f] for f in config.analysis.factors})
        rows.append(row)
    return MANIFEST.to_table(rows, config.analysis.factors)


def merge_manifest(study: Study, batches: list[Batch]) -> pa.Table:
    """manifest.parquet from the recorded batches, in plan order."""
    factors = study.config.analysis.factors
    parts = []
    for batch in batches:
        path = _row_file(study, batch)
        if not path.is_file():
            raise GenerationError(f"batch {batch.index} ({batch.key}) has no rows file {path}; "
                                  "run `hitkit generate` again to finish it")
        parts.append(MANIFEST.check(pq.read_table(path), factors, where=str(path)))
    table = pa.concat_tables(parts) if parts else MANIFEST.to_table([], factors)
    ids = table.column("iri_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise GenerationError("duplicate iri_id rows while merging the manifest")
    write_table(table, study.root / MANIFEST_FILE)
    return table


def run_generation(study: Study, device_name: str | None = None, progress: bool = True,
                   log: Callable[[str], None] = print,
                   after_batch: Callable[[Batch], None] | None = None,
                   rank: Rank | None = None) -> RunSummary:
    """Make every IRI of the study that is not made yet, then (rank 0) write the manifest."""
    config = study.config
    rank = rank or Rank.from_env()
    device = choose_device(device_name, rank)
    started = _init_distributed(rank, device)
    summary = RunSummary()
    try:
        if rank.rank == 0:
            summary.trained = train_missing(study, log)
        _barrier(rank)
        store = open_store(config.study.store, study.root, config.study.store_urls == "public",
                           int(config.study.store_url_hours * 3600))
        fallback = config.generation.distance_fallback
        distance, metric = perceptual_distance(config.generation.distance_metric,
                                               None if fallback == "none" else fallback)
        summary.distance_metric = metric
        # the losses' own distances, looked up once (a fallback warns once, not per batch)
        loss_distances = [loss_distance(loss) for loss in config.generation.losses]
        chash, vers, dev_label = config_hash(config), versions(), device_label(device)

        sizes = sorted({target_size(config, m) for m in config.models})
        images = {s: _Images(study, store, s) for s in sizes}
        first = images[sizes[0]]
        batches = plan_batches(config, [t.id for t in first.targets], first.seeds)
        summary.batches = len(batches)
        todo = [b for b in batches if not _row_file(study, b).is_file()]
        summary.done_before = len(batches) - len(todo)
        mine = [b for b in todo if b.index % rank.world == rank.rank]
        if rank.rank == 0:
            log(f"{len(batches)} batch(es), {sum(len(b.items) for b in batches)} IRIs; "
                f"{summary.done_before} already made; distance metric {metric}; "
                f"device {dev_label}" + (f"; {rank.world} processes" if rank.world > 1 else ""))

        for m, model in enumerate(config.models):
            model_batches = [b for b in mine if b.model == m]
            if not model_batches:
                continue
            built = build_network(model, checkpoint_path(study, model))
            net = built.net.to(device)
            size = target_size(config, model)

            def settings_for(seed: int, description: str):
                return resolve_settings(config.generation, device, seed, progress, description)

            for batch in model_batches:
                table = _make_batch(study, batch, net, built.layer, images[size], device,
                                    distance, metric, loss_distances[batch.loss], settings_for,
                                    chash, vers, dev_label)
                write_table(table, _row_file(study, batch))
                summary.made += 1
                if after_batch is not None:
                    after_batch(batch)
            del net, built
        _barrier(rank)
        if rank.rank == 0:
            table = merge_manifest(study, batches)
            summary.iris = table.num_rows
            summary.manifest = study.root / MANIFEST_FILE
        _barrier(rank)
    finally:
        if started:
            torch.distributed.destroy_process_group()
    return summary
