"""`hitkit demo`: every stage of a study, end to end, on the embedded demo study.

The demo copies a study.toml (data/examples/demo.toml unless `--config` names
another) into its out folder and runs fourteen stages on it, each a small
function calling that stage's own code — mostly the very command `hitkit <stage>`
runs — so the demo exercises exactly what a user runs:

validate → train → generate → proxy → design → publish → serve → simulate →
collect → review → export → analyze → figures → report

The survey app runs under uvicorn on 127.0.0.1 (a free port) in this process from
the serve stage to the end of the run, and is stopped when the run ends, fails or
is interrupted.

Resuming: `demo-state.json` in the out folder records, per stage, that it
finished, its wall time and the files it wrote. A stage is skipped only when the
record says it finished *and* its outputs check out (the files exist, the
manifest has every IRI, every place was submitted, the fit passed its gate, …).
Once a stage runs, every later stage runs too, since its inputs may have changed.
A run killed mid-stage starts again at that stage, and the stages resume inside
themselves: generation keeps its finished batches, simulated participants who
already submitted only replay their (idempotent) submission.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from hitkit.study.files import atomic_write
from hitkit.study.manifest import MANIFEST_FILE
from hitkit.study.proxy import PROXY_FILE
from hitkit.study.responses import RESPONSES_FILE
from hitkit.study.trials import TRIALS_FILE

# shipped inside the package so an installed hitkit finds it; data/examples links here
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "demo.toml"
DEFAULT_OUT = Path("demo-study")
STATE_FILE = "demo-state.json"
PLAN_FILE = "plan.txt"
# simulated participants: mostly attentive, a few careless ones for the exclusion rules
SIMULATION_MIX = "attentive=0.85,random=0.05,fast=0.05,side_biased=0.05"
# one participant at a time: each takes the least-filled HIT, so who answers which HIT,
# and with it every response, is the same on every run (the seed fixes the rest)
SIMULATION_CONCURRENCY = 1


class DemoError(RuntimeError):
    """A stage failed; the message says which and why."""


@dataclass(frozen=True)
class Stage:
    name: str
    what: str  # one line, shown when the stage starts
    run: Callable[[Demo], list[Path] | None]  # returns the files it wrote (recorded)
    check: Callable[[Demo], bool]  # are this stage's outputs complete?


@dataclass
class StageRun:
    name: str
    skipped: bool
    seconds: float  # this run's time, or the recorded time of a skipped stage


@dataclass
class DemoResult:
    root: Path
    stages: list[StageRun] = field(default_factory=list)
    seconds: float = 0.0  # this run's wall time
    report: Path | None = None
    headline: list[str] = field(default_factory=list)


class Demo:
    """The out folder, its state record, and what the stages share in one run."""

    def __init__(self, root: Path, config_file: Path, echo: Callable[[str], None]) -> None:
        self.root = root
        self.config_file = config_file
        self.echo = echo
        self.stack = ExitStack()
        self.state: dict = {"stages": {}}
        self._study = None
        self._ledger = None
        self._url: str | None = None

    # ------------------------------------------------------------ the folder

    @property
    def study_file(self) -> Path:
        return self.root / "study.toml"

    def prepare(self) -> None:
        """Create the out folder with its study.toml, or check the one that is there."""
        if not self.config_file.is_file():
            raise DemoError(f"{self.config_file}: no such study file")
        text = self.config_file.read_text(encoding="utf-8")
        if self.study_file.is_file():
            if self.study_file.read_text(encoding="utf-8") != text:
                raise DemoError(
                    f"{self.study_file} differs from {self.config_file}: this folder holds "
                    "another study; choose another --out or delete the folder")
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise DemoError(f"{self.root} is not empty and holds no demo study: "
                            "choose another --out")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.config_file, self.study_file)
        state_path = self.root / STATE_FILE
        if state_path.is_file():
            try:
                self.state = json.loads(state_path.read_text(encoding="utf-8"))
                self.state.setdefault("stages", {})
            except (ValueError, AttributeError):
                self.state = {"stages": {}}  # unreadable: every stage checks its outputs again

    def save_state(self) -> None:
        text = json.dumps(self.state, indent=2, sort_keys=True)
        atomic_write(self.root / STATE_FILE,
                     lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))

    def record(self, name: str) -> dict:
        return self.state["stages"].get(name, {})

    def complete(self, stage: Stage) -> bool:
        """Recorded as finished, the recorded files exist, and the stage's own check passes."""
        record = self.record(stage.name)
        if not record.get("done"):
            return False
        if not all((self.root / p).exists() for p in record.get("outputs", [])):
            return False
        try:
            return bool(stage.check(self))
        except Exception:  # an unreadable output is an incomplete one
            return False

    def begin(self, index: int) -> None:
        """Mark a stage as running; every later stage will have to run again."""
        for stage in STAGES[index:]:
            self.state["stages"].pop(stage.name, None)
        self.state["stages"][STAGES[index].name] = {
            "done": False, "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.save_state()

    def finish(self, stage: Stage, seconds: float, outputs: list[Path]) -> None:
        rel = sorted({str(Path(p).resolve().relative_to(self.root.resolve())) for p in outputs})
        self.state["stages"][stage.name] = {
            "done": True, "seconds": round(seconds, 1), "outputs": rel,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.save_state()

    # -------------------------------------------------------- shared things

    @property
    def study(self):
        if self._study is None:
            from hitkit.study.config import load_study
            from hitkit.study.config_errors import ConfigError

            try:
                self._study = load_study(self.root)
            except ConfigError as exc:
                raise DemoError(str(exc)) from None
        return self._study

    @property
    def ledger(self):
        if self._ledger is None:
            from hitkit.survey.ledger import Ledger

            self._ledger = self.stack.enter_context(Ledger.for_study(self.root))
        return self._ledger

    def start_server(self) -> str:
        """The survey app under uvicorn on 127.0.0.1, started once; stopped when the run ends."""
        if self._url is None:
            from hitkit.survey.web.app import create_app
            from hitkit.survey.web.serving import background_server

            self._url = self.stack.enter_context(
                background_server(create_app(self.study, self.ledger)))
        return self._url

    @property
    def serving(self) -> bool:
        return self._url is not None

    def open_link(self) -> tuple[str, int]:
        """(token, cap) of the open local batch's link for the active design."""
        from hitkit.survey.hits import active_design_id

        design = active_design_id(self.ledger)
        row = self.ledger.query_one(
            "SELECT l.token, l.cap FROM links l JOIN batches b USING (batch_id)"
            " WHERE b.design_id = ? AND b.platform = 'local' AND b.state = 'open'"
            " ORDER BY b.created_at DESC, l.cap DESC LIMIT 1", (design,))
        if row is None:
            raise DemoError("no open local batch: the publish stage did not finish")
        return row["token"], int(row["cap"])

    def progress(self):
        from hitkit.survey.progress import progress

        return progress(self.ledger)


def invoke(command: click.Command, *args: object) -> None:
    """Run a `hitkit` command as the command line would, in this process."""
    try:
        command.main(args=[str(a) for a in args], prog_name=f"hitkit {command.name}",
                     standalone_mode=False)
    except click.ClickException as exc:
        raise DemoError(f"`hitkit {command.name}`: {exc.format_message()}") from None
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise DemoError(f"`hitkit {command.name}` exited with status {exc.code}") from None


# ------------------------------------------------------------------ stages


def validate_stage(demo: Demo) -> list[Path]:
    from hitkit.study.size import check_paths, format_size, study_size

    study = demo.study
    errors, notes = check_paths(study)
    text = format_size(study, study_size(study.config), notes)
    demo.echo(text)
    if errors:
        raise DemoError("; ".join(errors))
    (demo.root / PLAN_FILE).write_text(text + "\n", encoding="utf-8")
    return [demo.study_file, demo.root / PLAN_FILE]


def validate_check(demo: Demo) -> bool:
    return (demo.root / PLAN_FILE).is_file()


def _checkpoints(demo: Demo) -> list[Path]:
    from generation.run import checkpoint_path

    return [checkpoint_path(demo.study, m) for m in demo.study.config.models]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def train_stage(demo: Demo) -> list[Path]:
    from tqdm.auto import tqdm

    from generation.run import GenerationError, train_missing

    missing = sum(not p.is_file() for p in _checkpoints(demo))
    workers = max(1, min(missing, _cores()))  # one process and one thread per model
    with tqdm(total=missing, desc="training", unit="model", leave=False) as bar:
        try:
            train_missing(demo.study, tqdm.write, workers=workers,
                          on_trained=lambda _: bar.update())
        except GenerationError as exc:
            raise DemoError(str(exc)) from None
    return _checkpoints(demo)


def train_check(demo: Demo) -> bool:
    return all(p.is_file() for p in _checkpoints(demo))


def generate_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.generate import generate

    invoke(generate, "--study", demo.root)
    return [demo.root / MANIFEST_FILE]


def generate_check(demo: Demo) -> bool:
    import pyarrow.parquet as pq

    from hitkit.study.size import study_size

    manifest = demo.root / MANIFEST_FILE
    if not manifest.is_file():
        return False
    table = pq.read_table(manifest, columns=["uri"])
    if table.num_rows != study_size(demo.study.config).iris:
        return False
    uris = table.column("uri").to_pylist()
    return all("://" in u or demo.study.resolve(u).is_file() for u in uris)


def proxy_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.generate import proxy

    invoke(proxy, "--study", demo.root)
    return [demo.root / PROXY_FILE]


def proxy_check(demo: Demo) -> bool:
    path, manifest = demo.root / PROXY_FILE, demo.root / MANIFEST_FILE
    if not path.is_file() or path.stat().st_mtime < manifest.stat().st_mtime:
        return False
    config = demo.study.config
    rows = len(path.read_text(encoding="utf-8").splitlines()) - 1
    return rows == len(config.models) * len(config.generation.losses)


def design_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.survey import design

    invoke(design, "--study", demo.root)
    return [demo.root / TRIALS_FILE, demo.root / "ledger.sqlite"]


def design_check(demo: Demo) -> bool:
    import pyarrow.parquet as pq

    from hitkit.survey.hits import active_design_id

    design = active_design_id(demo.ledger)
    if design is None:
        return False
    hits = set(pq.read_table(demo.root / TRIALS_FILE, columns=["hit_id"])
               .column("hit_id").to_pylist())
    open_hits = {r["hit_id"] for r in demo.ledger.query(
        "SELECT hit_id FROM hits WHERE design_id = ? AND state = 'open'", (design,))}
    return bool(hits) and hits == open_hits


def publish_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.survey import publish

    # one open link with a use per planned place: the simulated participants share it
    invoke(publish, "--study", demo.root, "--platform", "local", "--open-link")
    return []


def publish_check(demo: Demo) -> bool:
    _, cap = demo.open_link()
    return cap >= demo.progress().places


def serve_stage(demo: Demo) -> list[Path]:
    url = demo.start_server()
    demo.echo(f"survey app under uvicorn at {url} (preview: {url}/?preview=1); "
              "it stops when the demo ends")
    return []


def serve_check(demo: Demo) -> bool:
    # nothing lasting: the server runs in this process, and a later run needs it again
    # only until every place is submitted
    return demo.serving or demo.complete(STAGES[_index("simulate")])


def simulate_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.survey import simulate

    url = demo.start_server()
    token, _ = demo.open_link()
    places = demo.progress().places
    demo.echo(f"{places} simulated participants, mix {SIMULATION_MIX}")
    # the same seed gives the same participants: after an interruption, those who
    # already submitted replay their submission (stored once) and the rest take part
    invoke(simulate, "--study", demo.root, "--participants", places, "--mix", SIMULATION_MIX,
           "--url", url, "--token", token, "--seed", demo.study.config.study.seed,
           "--concurrency", SIMULATION_CONCURRENCY)
    return []


def simulate_check(demo: Demo) -> bool:
    p = demo.progress()
    return p.places > 0 and p.submitted >= p.places


def collect_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.survey import collect

    invoke(collect, "--study", demo.root)
    return []


def collect_check(demo: Demo) -> bool:
    events = demo.ledger.events("collected")
    return bool(events) and events[-1]["data"].get("submitted", 0) >= demo.progress().places


def _behaviours(demo: Demo) -> dict[str, str]:
    """assignment -> the simulated behaviour it reported in its client facts."""
    out = {}
    for row in demo.ledger.query(
            "SELECT assignment_id, client FROM assignments WHERE state != 'started'"):
        try:
            out[row["assignment_id"]] = json.loads(row["client"] or "{}").get("simulated", "?")
        except (ValueError, AttributeError):
            out[row["assignment_id"]] = "?"
    return out


def review_stage(demo: Demo) -> list[Path]:
    from hitkit.survey.quality import review

    verdicts = review(demo.ledger, demo.study.config.quality)
    behaviours = _behaviours(demo)
    excluded = [q for q in verdicts if q.excluded]
    demo.echo(f"{len(verdicts)} submitted assignments: keep {len(verdicts) - len(excluded)}, "
              f"exclude {len(excluded)} by the pre-registered [quality] rules "
              "(`hitkit review` prints the full table)")
    kinds = sorted(set(behaviours.values()))
    for kind in kinds:
        mine = [q for q in verdicts if behaviours.get(q.assignment_id) == kind]
        demo.echo(f"  {kind:<12} {len(mine):3d} submitted, "
                  f"{sum(q.excluded for q in mine):3d} excluded")
    for q in excluded:
        demo.echo(f"  excluded {q.assignment_id} ({behaviours.get(q.assignment_id, '?')}): "
                  f"{q.exclusion_reason}")
    return []


def review_check(demo: Demo) -> bool:
    row = demo.ledger.query_one(
        "SELECT COUNT(*) AS n, SUM(assignment_id NOT IN (SELECT assignment_id FROM reviews))"
        " AS missing FROM assignments WHERE state != 'started'")
    return row["n"] > 0 and not row["missing"]


def export_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.survey import export

    invoke(export, "--study", demo.root)
    return [demo.root / RESPONSES_FILE]


def export_check(demo: Demo) -> bool:
    import pyarrow.parquet as pq

    stored = demo.ledger.query_one(
        "SELECT COUNT(*) AS n FROM responses r JOIN assignments a USING (assignment_id)"
        " WHERE a.state != 'started'")["n"]
    return pq.read_metadata(demo.root / RESPONSES_FILE).num_rows >= stored > 0


def analyze_stage(demo: Demo) -> list[Path]:
    from hitkit.cli.analysis import analyze

    invoke(analyze, "--study", demo.root)
    folder = demo.root / "analysis"
    return [folder / "summary.json", folder / "effects.csv", folder / "posterior.nc"]


def analyze_check(demo: Demo) -> bool:
    summary = json.loads((demo.root / "analysis" / "summary.json").read_text(encoding="utf-8"))
    return bool(summary.get("gate_passed")) and (demo.root / "analysis" / "effects.csv").is_file()


def figures_stage(demo: Demo) -> list[Path]:
    from analysis.figures import FigureInputError, write_figures

    try:
        paths = list(write_figures(demo.root, echo=lambda line: demo.echo(f"  {line}")))
    except FigureInputError as exc:
        raise DemoError(str(exc)) from None
    demo.echo(f"{len(paths)} figure file(s) in {demo.root / 'figures'}")
    return paths


def report_stage(demo: Demo) -> list[Path]:
    from analysis.figures import FigureInputError
    from analysis.report.page import write_report

    try:
        return [write_report(demo.root, echo=demo.echo)]
    except FigureInputError as exc:
        raise DemoError(str(exc)) from None


def recorded_outputs(demo: Demo, name: str) -> bool:
    return bool(demo.record(name).get("outputs"))


STAGES: list[Stage] = [
    Stage("validate", "check study.toml and print the study's plan", validate_stage,
          validate_check),
    Stage("train", "train the tiny models on the procedural shapes set", train_stage,
          train_check),
    Stage("generate", "make the IRIs with the regulariser-free and the regularised loss",
          generate_stage, generate_check),
    Stage("proxy", "score the IRIs with the machine 2AFC proxy", proxy_stage, proxy_check),
    Stage("design", "2AFC trials with catch trials and repeats, packed into HITs",
          design_stage, design_check),
    Stage("publish", "open the study on the local platform (one shared link)", publish_stage,
          publish_check),
    Stage("serve", "start the survey app under uvicorn on 127.0.0.1", serve_stage, serve_check),
    Stage("simulate", "simulated participants take the survey over the HTTP API",
          simulate_stage, simulate_check),
    Stage("collect", "collect the submissions", collect_stage, collect_check),
    Stage("review", "score every assignment by the pre-registered exclusion rules",
          review_stage, review_check),
    Stage("export", "write responses.parquet (pseudonymised, with factors)", export_stage,
          export_check),
    Stage("analyze", "fit the hierarchical Bayesian model of human alignment", analyze_stage,
          analyze_check),
    Stage("figures", "draw the figures from the posterior", figures_stage,
          lambda d: recorded_outputs(d, "figures")),
    Stage("report", "write report.html", report_stage, lambda d: recorded_outputs(d, "report")),
]


def _index(name: str) -> int:
    return next(i for i, s in enumerate(STAGES) if s.name == name)


# ------------------------------------------------------------------- the run


def run_demo(out: Path = DEFAULT_OUT, config_file: Path | None = None,
             echo: Callable[[str], None] = click.echo,
             before_stage: Callable[[str], None] | None = None) -> DemoResult:
    """Run (or resume) every stage in `out`; `before_stage(name)` is a hook for tests."""
    demo = Demo(Path(out), Path(config_file) if config_file else DEMO_CONFIG, echo)
    demo.prepare()
    result = DemoResult(demo.root)
    started = time.perf_counter()
    rerun = False  # once a stage runs, every later stage runs too
    n = len(STAGES)
    with demo.stack:  # stops the survey server and closes the ledger, also on errors
        for i, stage in enumerate(STAGES):
            label = f"[{i + 1}/{n}] {stage.name}"
            if not rerun and demo.complete(stage):
                seconds = float(demo.record(stage.name).get("seconds", 0.0))
                echo(f"{label} ... done before ({seconds:.1f} s), skipped")
                result.stages.append(StageRun(stage.name, True, seconds))
                continue
            rerun = True
            echo(f"{label}: {stage.what}")
            demo.begin(i)
            t0 = time.perf_counter()
            try:
                if before_stage is not None:
                    before_stage(stage.name)
                outputs = stage.run(demo) or []
                seconds = time.perf_counter() - t0
                demo.finish(stage, seconds, outputs)
                if not demo.complete(stage):  # the same check a later run makes
                    demo.state["stages"][stage.name]["done"] = False
                    demo.save_state()
                    raise DemoError("its outputs are missing or incomplete")
            except DemoError as exc:
                raise DemoError(f"stage {stage.name} failed: {exc}\n"
                                "Fix the cause and run `hitkit demo` again: it resumes at "
                                "this stage.") from None
            echo(f"{label} ... {seconds:.1f} s")
            result.stages.append(StageRun(stage.name, False, seconds))
    result.seconds = time.perf_counter() - started
    report = demo.record("report").get("outputs", [])
    result.report = (demo.root / report[0]).resolve() if report else None
    result.headline = headline(demo)
    return result


def headline(demo: Demo) -> list[str]:
    """The factor effects (pairwise contrasts) from analysis/effects.csv, one line each."""
    import csv

    path = demo.root / "analysis" / "effects.csv"
    if not path.is_file():
        return []
    lines = []
    try:
        summary = json.loads((demo.root / "analysis" / "summary.json").read_text("utf-8"))
    except (OSError, ValueError):
        summary = {}
    if summary.get("iri_loss"):
        rows = summary.get("rows")
        lines.append(f"IRIs of the loss {summary['iri_loss']!r}, "
                     f"{f'{rows:,}' if isinstance(rows, int) else '?'} analysed responses "
                     "(`hitkit analyze --iri-loss NAME` for another loss)")
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["kind"] != "pairwise":
                continue
            contrast = row["contrast"]
            mean, low, high = (float(row[k]) for k in (
                "alignment_mean", "alignment_hdi_low", "alignment_hdi_high"))
            p, logit = float(row["alignment_p_gt_0"]), float(row["logit_mean"])
            first, sep, second = contrast.partition(" − ")
            if mean < 0 and sep:  # state it the way round that is positive
                contrast = f"{second} − {first}"
                mean, low, high, p, logit = -mean, -high, -low, 1.0 - p, -logit
            lines.append(f"{row['factor']}: {contrast}  alignment {mean:+.3f} "
                         f"[{low:+.3f}, {high:+.3f}], P(> 0) = {p:.2f}  (logit {logit:+.2f})")
    return lines


def format_summary(result: DemoResult) -> str:
    width = max(len(s.name) for s in result.stages)
    lines = ["", "Stage times"]
    for s in result.stages:
        note = "  (earlier run, skipped now)" if s.skipped else ""
        lines.append(f"  {s.name:<{width}}  {s.seconds:7.1f} s{note}")
    ran = sum(s.seconds for s in result.stages if not s.skipped)
    lines.append(f"  {'total':<{width}}  {result.seconds:7.1f} s this run "
                 f"({ran:.1f} s in stages that ran)")
    if result.headline:
        lines += ["", "Headline effects (difference in chance-corrected human alignment, "
                      "94 % HDI; see analysis/effects.md):"]
        lines += [f"  {line}" for line in result.headline]
    if result.report is not None:
        lines += ["", f"Report: {result.report}"]
    return "\n".join(lines)


@click.command(epilog="""\b
Examples:
  hitkit demo                             run (or resume) the demo in ./demo-study
  hitkit demo --out /tmp/hitkit-demo      another folder
  hitkit demo --config small.toml --out small-demo
Run it again to resume: finished stages are skipped.
""")
@click.option("--out", default=DEFAULT_OUT, show_default=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the demo study and everything it makes.")
@click.option("--config", "config_file", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Run this study.toml instead of data/examples/demo.toml (it is copied into "
                   "the out folder, so relative paths in it are taken from there).")
def demo(out: Path, config_file: Path | None) -> None:
    """Run every stage of a study on the demo study, on a laptop CPU in minutes.

    Trains 8 tiny models on procedural shapes, makes IRIs with two losses, scores
    them with the machine proxy, designs a 2AFC survey with catch trials and
    repeats, publishes it on the local platform, serves it under uvicorn on
    127.0.0.1, lets simulated participants (a few careless ones among them) take
    it over HTTP, applies the pre-registered exclusions, exports, fits the
    Bayesian model, draws the figures and writes report.html. Each stage prints
    its wall time; a rerun skips the stages whose outputs are complete.
    """
    try:
        result = run_demo(out, config_file)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run `hitkit demo` again to resume where it stopped",
                   err=True)
        sys.exit(130)
    click.echo(format_summary(result))
