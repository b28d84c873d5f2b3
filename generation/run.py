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

import io
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from generation import identity
from generation.checkpoints import checkpoint_sha256
from generation.distances import perceptual_distance
from generation.fourier import to_image
from generation.image_tensors import fit, to_pixels
from generation.loop import invert, quantize
from generation.losses import rep_error
from generation.network import build_network
from generation.objective import loss_distance
from generation.seeds import SeedSpec, fourier_seed, other_target_index, seed_image, seed_specs
from generation.settings import resolve_settings
from generation.targets import Target, load_targets
from generation.train import TrainReport, train_demo_model
from hitkit.study.config import Study, StudyConfig
from hitkit.study.files import atomic_write
from hitkit.study.generation_config import AdversarialLoss, ModelSpec
from hitkit.study.image_io import png_bytes, sha256_hex
from hitkit.study.images import ImageStore
from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
from hitkit.study.store import open_store
from hitkit.study.tables import write_table

STATE_DIR = ".generation"


class GenerationError(RuntimeError):
    """A generation problem; the message names the model, file or setting."""


# ------------------------------------------------------------------ planning


def _digest(obj: object, n: int = 16) -> str:
    return identity.digest(obj, n)


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


def loss_json(loss: object) -> str:
    return json.dumps(loss.model_dump(mode="json", by_alias=True), sort_keys=True)


def paper_lambda(config: StudyConfig, loss: object) -> bool:
    """Whether `loss` takes the paper's automatic λ: one value from the plan's first batch."""
    return (config.generation.mode == "paper" and isinstance(loss, AdversarialLoss)
            and loss.lam == "auto")


def seed_identity(config: StudyConfig, spec: SeedSpec, target_ids: list[str], t: int) -> dict:
    """What makes a seed image: its kind's parameters, its draw, and the other target it is."""
    seed = {"kind": spec.kind.model_dump(mode="json"), "draw": spec.draw,
            "kind_index": spec.kind_index, "seeds_seed": config.seeds.seed}
    if spec.per_target:
        seed["other_target"] = target_ids[other_target_index(spec, t, len(target_ids))]
    return seed


def plan_batches(config: StudyConfig, target_ids: list[str], seeds: list[SeedSpec],
                 checkpoints: dict[str, str], precision: str) -> list[Batch]:
    """The whole study as batches, in a fixed order: model, loss, target, seed.

    `checkpoints` maps model names to their files' SHA-256 and `precision` is the
    resolved one: both are part of every IRI id (generation.identity).
    """
    batches: list[Batch] = []
    size = config.generation.batch_size
    settings = identity.pixel_settings(config.generation, precision)
    pairs = [(t, s) for t in range(len(target_ids)) for s in range(len(seeds))]
    for m, model in enumerate(config.models):
        who = identity.model_identity(model, checkpoints[model.name])
        for li, loss in enumerate(config.generation.losses):
            spec = loss_json(loss)
            first = [f"{target_ids[t]}/{seeds[s].id}" for t, s in pairs[:size]]
            lambda_from = first if paper_lambda(config, loss) else None
            items = [Item(t, s, identity.iri_id(
                who, settings, spec, target_ids[t], seed_identity(config, seeds[s], target_ids, t),
                target_size(config, model), config.study.seed, lambda_from)) for t, s in pairs]
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


def choose_device(name: str | None, rank: Rank, cuda_count: int | None = None) -> torch.device:
    """The device `--device NAME` means for this process (a pure function of its arguments).

    auto: rank i on GPU LOCAL_RANK (mod the GPU count), else the CPU. cuda: GPU LOCAL_RANK.
    cuda:N names one GPU, so it is an error under torchrun, where every rank would share it.
    """
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda", rank.local_rank % cuda_count) if cuda_count else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GenerationError(f"--device {name!r}: not a device (cpu, cuda, cuda:N or auto)") from None
    if device.type != "cuda":
        return device
    if cuda_count == 0:
        build = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        raise GenerationError(f"--device {name}: CUDA is not available here (torch "
                              f"{torch.__version__}, {build}); use --device cpu or auto")
    if device.index is None:
        if rank.local_rank >= cuda_count:
            raise GenerationError(f"--device cuda: LOCAL_RANK {rank.local_rank} has no GPU "
                                  f"(this machine has {cuda_count}); start at most {cuda_count} "
                                  "processes per node")
        return torch.device("cuda", rank.local_rank)
    if rank.world > 1:
        raise GenerationError(
            f"--device {name} under torchrun (WORLD_SIZE={rank.world}) would put every rank on "
            f"GPU {device.index}; use --device cuda (rank i uses GPU LOCAL_RANK) or auto")
    if device.index >= cuda_count:
        raise GenerationError(f"--device {name}: this machine has {cuda_count} GPU(s) "
                              f"(cuda:0 to cuda:{cuda_count - 1})")
    return device


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
    replaced: int = 0  # stale IRIs (of a changed checkpoint) remade by --replace-stale


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
        self.size, self.store, self.section = size, store, config.seeds
        self.uris: dict[str, str] = {}
        self.spectra: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}

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

    def fourier_start(self, s: int) -> tuple[torch.Tensor, torch.Tensor, str] | None:
        """Paper mode's Fourier start for seed `s`: (spectrum, its 8-bit image, image URI),
        or None when the seed kind has no frequency-space draw."""
        spec = self.seeds[s]
        key = f"fourier:{spec.id}"
        if key not in self.spectra:
            spectrum = fourier_seed(spec, self.section, self.size)
            self.spectra[key] = None if spectrum is None else (
                spectrum, quantize(to_image(spectrum[None], self.size, self.size)[0]))
        found = self.spectra[key]
        if found is None:
            return None
        uri = self._put(f"seeds/{spec.id}-fourier-{self.size}px.png", found[1])
        return found[0], found[1], uri


def _row_file(study: Study, batch: Batch) -> Path:
    return study.root / STATE_DIR / "rows" / f"{batch.key}.parquet"


def _made_file(study: Study, batch: Batch) -> Path:
    return study.root / STATE_DIR / "made" / f"{batch.key}.json"


@dataclass(frozen=True)
class Work:
    """What every batch of one model shares while it is made."""

    net: torch.nn.Module
    layer: str
    device: torch.device
    distance: Callable  # the manifest's distance
    metric: str
    chash: str
    vers: str
    dev_label: str
    settings_for: Callable[[int, str], object]
    lambdas: dict[int, float]  # loss index -> the paper's λ, computed on its first batch


def _starts(study: Study, batch: Batch, images: _Images, loss) -> tuple:
    """(seed images, variables to start from or None, seed URIs, seed ids) of a batch.

    A paper-mode Fourier loss starts from a spectrum drawn in frequency space; its 8-bit
    image is the seed shown and stored, under its own id (`<seed id>-fourier`)."""
    paper_fourier = study.config.generation.mode == "paper" and getattr(loss, "fourier", False)
    starts = [images.fourier_start(it.seed) if paper_fourier else None for it in batch.items]
    if all(s is not None for s in starts) and starts:
        return (torch.stack([s[1] for s in starts]), torch.stack([s[0] for s in starts]),
                [s[2] for s in starts], [f"{images.seeds[it.seed].id}-fourier"
                                         for it in batch.items])
    pairs = [images.seed(it.seed, it.target) for it in batch.items]
    return (torch.stack([p[0] for p in pairs]), None, [p[1] for p in pairs],
            [images.seeds[it.seed].id for it in batch.items])


def _make_batch(study: Study, batch: Batch, work: Work, images: _Images,
                objective_distance) -> pa.Table:
    config = study.config
    model = config.models[batch.model]
    loss = config.generation.losses[batch.loss]
    device = work.device
    targets = torch.stack([images.targets[it.target].image for it in batch.items]).to(device)
    seed_images, start, seed_uris, seed_ids = _starts(study, batch, images, loss)
    seeds = seed_images.to(device)
    # the transform draws depend on the study and the loss, not on which IRIs share the batch
    seed_int = int(_digest([config.study.seed, loss_json(loss)], 8), 16)
    settings = work.settings_for(seed_int, f"{model.name} · {loss.name}")
    start_time = time.perf_counter()
    result = invert(work.net, targets, seeds, loss, settings, objective_distance,
                    start=None if start is None else start.to(device),
                    lam=work.lambdas.get(batch.loss))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start_time
    with torch.no_grad():
        made = result.images.to(device)
        d_target = work.distance(made, targets).double().cpu().tolist()
        d_seed = work.distance(made, seeds).double().cpu().tolist()
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
            "iri_id": it.iri_id, "model": model.name, "arch": model.arch, "layer": work.layer,
            "loss": loss.name, "loss_kind": loss.kind, "loss_spec": loss_json(loss),
            "target_id": target.id, "target_uri": images.target_uri(it.target),
            "seed_id": seed_ids[i], "seed_kind": spec.kind.kind, "seed_uri": seed_uris[i],
            "uri": uri, "sha256": digest, "width": images.size, "height": images.size,
            "rep_error": float(result.rep_error[i]), "dist_target": d_target[i],
            "dist_seed": d_seed[i], "distance_metric": work.metric, "steps": settings.steps,
            "precision": precision, "device": work.dev_label, "wall_time_s": wall,
            "config_hash": work.chash, "versions": work.vers, "created_at": now,
        }
        row.update({f: model.factors[f] for f in config.analysis.factors})
        rows.append(row)
    return MANIFEST.to_table(rows, config.analysis.factors)


def _record(study: Study, batch: Batch, checkpoint: str) -> None:
    """Which model and checkpoint content a batch was made from (read by `stale_batches`)."""
    config = study.config
    atomic_write(_made_file(study, batch), lambda tmp: Path(tmp).write_text(json.dumps({
        "key": batch.key, "model": config.models[batch.model].name,
        "loss": config.generation.losses[batch.loss].name, "checkpoint_sha256": checkpoint,
        "iri_ids": [it.iri_id for it in batch.items]})))


@dataclass(frozen=True)
class StaleBatch:
    key: str
    model: str
    made_from: str  # the checkpoint's SHA-256 when the batch was made
    iris: int


def stale_batches(study: Study, batches: list[Batch], checkpoints: dict[str, str]
                  ) -> list[StaleBatch]:
    """Recorded batches of a model whose checkpoint file has changed since they were made."""
    planned = {b.key for b in batches}
    found = []
    for path in sorted((study.root / STATE_DIR / "made").glob("*.json")):
        record = json.loads(path.read_text())
        name = record["model"]
        if record["key"] in planned or name not in checkpoints:
            continue
        if record["checkpoint_sha256"] != checkpoints[name]:
            found.append(StaleBatch(record["key"], name, record["checkpoint_sha256"],
                                    len(record["iri_ids"])))
    return found


def _stale_message(study: Study, stale: list[StaleBatch], checkpoints: dict[str, str]) -> str:
    lines = []
    for name in sorted({s.model for s in stale}):
        mine = [s for s in stale if s.model == name]
        model = next(m for m in study.config.models if m.name == name)
        was = sorted({s.made_from[:12] for s in mine})
        lines.append(f"model {name}: {checkpoint_path(study, model)} changed since "
                     f"{sum(s.iris for s in mine)} IRI(s) in {len(mine)} batch(es) were made "
                     f"from it (sha256 {', '.join(was)} then, {checkpoints[name][:12]} now)")
    return "; ".join(lines)


def _drop(study: Study, stale: list[StaleBatch]) -> None:
    for s in stale:
        for path in (study.root / STATE_DIR / "rows" / f"{s.key}.parquet",
                     study.root / STATE_DIR / "made" / f"{s.key}.json"):
            path.unlink(missing_ok=True)


def first_batch_lambda(net, images: _Images, batch: Batch, distance) -> float:
    """The paper's automatic λ: mean(rep error) / mean(D) at the start of its first batch."""
    device = next(net.buffers()).device
    targets = torch.stack([images.targets[it.target].image for it in batch.items]).to(device)
    seeds = torch.stack([images.seed(it.seed, it.target)[0] for it in batch.items]).to(device)
    with torch.no_grad():
        rep0 = rep_error(net(seeds), net(targets))
        d0 = distance(seeds, targets)
    return float(rep0.mean() / d0.mean().clamp_min(1e-6))


def _read_pixels(store: ImageStore, uri: str, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(store.read(uri))) as image:
        return fit(np.asarray(image.convert("RGB")), size)


def refresh_distances(study: Study, table: pa.Table, distance: Callable, metric: str,
                      device: torch.device) -> pa.Table | None:
    """The rows' dist_target / dist_seed measured with `metric` from the stored PNGs, or None
    when they already are: the metric only fills these columns, so changing it remakes no IRI."""
    rows = table.to_pylist()
    if all(r["distance_metric"] == metric for r in rows):
        return None
    uris = {r[c] for r in rows for c in ("uri", "target_uri", "seed_uri")}
    store = ImageStore(study.root, {u: u for u in uris})
    for r in rows:
        if r["distance_metric"] != metric:
            made, target, seed = (_read_pixels(store, r[c], r["width"])[None].to(device)
                                  for c in ("uri", "target_uri", "seed_uri"))
            with torch.no_grad():
                r["dist_target"] = float(distance(made, target)[0])
                r["dist_seed"] = float(distance(made, seed)[0])
            r["distance_metric"] = metric
    return MANIFEST.to_table(rows, study.config.analysis.factors)


def merge_manifest(study: Study, batches: list[Batch],
                   distance: tuple[Callable, str, torch.device] | None = None) -> pa.Table:
    """manifest.parquet from the recorded batches, in plan order; with `distance`
    (function, metric, device), rows measured with another metric are measured again."""
    factors = study.config.analysis.factors
    parts = []
    for batch in batches:
        path = _row_file(study, batch)
        if not path.is_file():
            raise GenerationError(f"batch {batch.index} ({batch.key}) has no rows file {path}; "
                                  "run `hitkit generate` again to finish it")
        part = MANIFEST.check(pq.read_table(path), factors, where=str(path))
        refreshed = None if distance is None else refresh_distances(study, part, *distance)
        if refreshed is not None:
            write_table(refreshed, path)
            part = refreshed
        parts.append(part)
    table = pa.concat_tables(parts) if parts else MANIFEST.to_table([], factors)
    ids = table.column("iri_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise GenerationError("duplicate iri_id rows while merging the manifest")
    write_table(table, study.root / MANIFEST_FILE)
    return table


def run_generation(study: Study, device_name: str | None = None, progress: bool = True,
                   log: Callable[[str], None] = print,
                   after_batch: Callable[[Batch], None] | None = None,
                   rank: Rank | None = None, trust_checkpoints: bool = False,
                   replace_stale: bool = False) -> RunSummary:
    """Make every IRI of the study that is not made yet, then (rank 0) write the manifest.

    IRIs made from a checkpoint file that has changed since are reported and stop the
    run before any work; `replace_stale` remakes exactly those instead.
    """
    config = study.config
    rank = rank or Rank.from_env()
    device = choose_device(device_name, rank)
    started = _init_distributed(rank, device)
    summary = RunSummary()
    try:
        if rank.rank == 0:
            summary.trained = train_missing(study, log)
        _barrier(rank)
        checkpoints = {m.name: checkpoint_sha256(checkpoint_path(study, m)) for m in config.models}
        precision = resolve_settings(config.generation, device).precision
        sizes = sorted({target_size(config, m) for m in config.models})
        store = open_store(config.study.store, study.root, config.study.store_urls == "public",
                           int(config.study.store_url_hours * 3600))
        images = {s: _Images(study, store, s) for s in sizes}
        first = images[sizes[0]]
        batches = plan_batches(config, [t.id for t in first.targets], first.seeds, checkpoints,
                               precision)
        stale = stale_batches(study, batches, checkpoints)
        if stale:
            message = _stale_message(study, stale, checkpoints)
            if not replace_stale:
                raise GenerationError(f"{message}; run `hitkit generate --replace-stale` to "
                                      "remake only these IRIs, or restore the old file")
            _barrier(rank)  # every rank has read the records before rank 0 drops them
            if rank.rank == 0:
                log(f"replacing stale IRIs: {message}")
                _drop(study, stale)
            summary.replaced = sum(s.iris for s in stale)
        _barrier(rank)
        fallback = config.generation.distance_fallback
        distance, metric = perceptual_distance(config.generation.distance_metric,
                                               None if fallback == "none" else fallback)
        summary.distance_metric = metric
        # the losses' own distances, looked up once (a fallback warns once, not per batch)
        loss_distances = [loss_distance(loss) for loss in config.generation.losses]
        chash = identity.config_hash(config, checkpoints, precision)
        vers, dev_label = versions(), device_label(device)

        summary.batches = len(batches)
        todo = [b for b in batches if not _row_file(study, b).is_file()]
        summary.done_before = len(batches) - len(todo)
        mine = [b for b in todo if b.index % rank.world == rank.rank]
        if rank.rank == 0:
            log(f"{len(batches)} batch(es), {sum(len(b.items) for b in batches)} IRIs; "
                f"{summary.done_before} already made; distance metric {metric}; "
                f"device {dev_label}, {precision}"
                + (f"; {rank.world} processes" if rank.world > 1 else ""))

        paper = config.generation.mode == "paper"
        for m, model in enumerate(config.models):
            model_batches = [b for b in mine if b.model == m]
            if not model_batches:
                continue
            built = build_network(model, checkpoint_path(study, model), trust=trust_checkpoints,
                                  fake_relu=paper)
            if paper and not built.fake_relu and rank.rank == 0:
                log(f"model {model.name}: arch {model.arch} has no fake_relu in the reference "
                    "code; its ReLUs stay as they are")
            net = built.net.to(device)
            size = target_size(config, model)
            lambdas = {
                li: first_batch_lambda(net, images[size],
                                       next(b for b in batches if b.model == m and b.loss == li),
                                       loss_distances[li])
                for li, loss in enumerate(config.generation.losses) if paper_lambda(config, loss)
            }

            def settings_for(seed: int, description: str):
                return resolve_settings(config.generation, device, seed, progress, description)

            work = Work(net, built.layer, device, distance, metric, chash, vers, dev_label,
                        settings_for, lambdas)
            for batch in model_batches:
                table = _make_batch(study, batch, work, images[size], loss_distances[batch.loss])
                _record(study, batch, checkpoints[model.name])
                write_table(table, _row_file(study, batch))
                summary.made += 1
                if after_batch is not None:
                    after_batch(batch)
            del net, built, work
        _barrier(rank)
        if rank.rank == 0:
            table = merge_manifest(study, batches, (distance, metric, device))
            summary.iris = table.num_rows
            summary.manifest = study.root / MANIFEST_FILE
        _barrier(rank)
    finally:
        if started:
            torch.distributed.destroy_process_group()
    return summary
