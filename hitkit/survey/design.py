"""Trial design: from the manifest's IRIs to HITs of trials with an answer key.

- 2AFC: the query is an IRI; the options are its target and a foil (another
  target, or the IRI's seed); the correct side is balanced within every HIT.
- Matching: k IRIs of one model and loss with their k targets; the answer is a
  permutation (for each query IRI, the index of its target among the options).
- Catch trials: the query is a target image itself (the answer is obvious), placed
  at random but never first. Repeats: a share of main trials shown again later in
  the same HIT with the options in reverse order (sides swapped).
- Packing: main trials are dealt round-robin over the (model, loss) cells, the
  deal continuing from HIT to HIT (a Latin-square rotation), so every HIT mixes
  models and conditions evenly; no target appears in two main trials of a HIT.
- Foils that give nothing away (2AFC, foil 'other-target'): within a HIT, every image
  shown as a correct option is shown as a foil equally often (the foils are a
  derangement of the correct options, repeated trials paired into swaps; catch
  trials among themselves), so knowing which slots show the same image does not tell
  which option of a main trial is correct. With an odd
  number of repeats one pair is off by one; with 'seed' foils the seeds are never
  correct, and only the per-slot image bytes (hitkit.survey.served_images) hide them.

Everything is drawn from one seeded generator over a sorted manifest, so the
same manifest and study.toml give the same design, IDs included.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from hitkit.study.config import StudyConfig, SurveySection
from hitkit.study.trials import TRIALS


class DesignError(ValueError):
    """The manifest and the survey settings do not make a design."""


@dataclass(frozen=True)
class Unit:
    """A main trial before its options are ordered: one IRI (2AFC) or k IRIs (matching)."""

    iris: tuple[str, ...]
    targets: tuple[str, ...]  # the target of each IRI, in the order of `iris`
    foil: str | None  # 2AFC only
    model: str
    loss: str

    @property
    def cell(self) -> tuple[str, str]:
        return (self.model, self.loss)


@dataclass(frozen=True)
class Trial:
    trial_id: str
    hit_id: str
    position: int
    task: str
    kind: str  # main, catch, repeat
    query: tuple[str, ...]
    options: tuple[str, ...]
    answer: tuple[int, ...]
    chance: float
    repeat_of: str | None
    model: str | None
    loss: str | None

    def row(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id, "hit_id": self.hit_id, "position": self.position,
            "task": self.task, "kind": self.kind, "query": list(self.query),
            "options": list(self.options), "answer": list(self.answer), "chance": self.chance,
            "repeat_of": self.repeat_of, "model": self.model, "loss": self.loss,
        }


@dataclass(frozen=True)
class Hit:
    hit_id: str
    ordinal: int
    trials: tuple[Trial, ...]
    practice: dict[str, Any]  # {query, options, answer}: shown with feedback, not analysed


@dataclass
class Design:
    design_id: str
    task: str
    seed: int
    hits: list[Hit]
    notes: list[str] = field(default_factory=list)

    @property
    def trials(self) -> list[Trial]:
        return [t for hit in self.hits for t in hit.trials]

    def table(self) -> pa.Table:
        return TRIALS.to_table([t.row() for t in self.trials])

    @property
    def trials_sha256(self) -> str:
        text = json.dumps([t.row() for t in self.trials], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------- building


def manifest_rows(manifest: pa.Table) -> list[dict[str, Any]]:
    columns = ["iri_id", "model", "loss", "target_id", "seed_id"]
    rows = manifest.select(columns).to_pylist()
    rows.sort(key=lambda r: r["iri_id"])
    ids = [r["iri_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DesignError("manifest: iri_id values are not unique")
    return rows


def make_units(rows: list[dict[str, Any]], config: StudyConfig, rng: random.Random) -> list[Unit]:
    return TASKS[config.survey.task].units(rows, config.survey, rng)


def pack_units(units: list[Unit], per_hit: int, rng: random.Random) -> list[list[Unit]]:
    """Deal units into HITs round-robin over cells, no target twice in a HIT.

    Each pick takes, among the units whose targets the HIT does not show yet, one
    of the model and then the loss the HIT has least of; then of the model, the
    loss and the targets with the most units left to deal (so the last HITs are not left with one model or
    with units sharing one target); among equals, the next cell in turn.
    """
    # cells ordered loss-major, so neighbouring cells in the rotation differ in model
    cells = sorted({u.cell for u in units}, key=lambda c: (c[1], c[0]))
    shuffled = list(units)
    rng.shuffle(shuffled)
    # cell -> targets -> units, in shuffled order
    queues: dict[tuple[str, str], dict[tuple[str, ...], deque[Unit]]] = {c: {} for c in cells}
    left: dict[str, int] = {}
    model_left = Counter(u.model for u in units)
    loss_left = Counter(u.loss for u in units)
    for u in shuffled:
        queues[u.cell].setdefault(u.targets, deque()).append(u)
        for t in u.targets:
            left[t] = left.get(t, 0) + 1
    remaining = len(units)
    n_hits = math.ceil(remaining / per_hit)
    sizes = [remaining // n_hits + (1 if i < remaining % n_hits else 0) for i in range(n_hits)]
    hits: list[list[Unit]] = []
    pointer = 0
    while remaining:
        size = sizes[len(hits)] if len(hits) < len(sizes) else per_hit
        hit: list[Unit] = []
        used: set[str] = set()
        models_in_hit: dict[str, int] = {}
        losses_in_hit: dict[str, int] = {}
        while len(hit) < size and remaining:
            # model and loss are fixed per cell: only cells with the best such score compete
            prefixes = {
                step: (-models_in_hit.get(cell[0], 0), -losses_in_hit.get(cell[1], 0),
                       model_left[cell[0]], loss_left[cell[1]])
                for step in range(len(cells))
                if queues[(cell := cells[(pointer + step) % len(cells)])]
            }
            best: tuple[int, ...] | None = None
            choice: tuple[int, tuple[str, ...]] | None = None
            for prefix in sorted(set(prefixes.values()), reverse=True):
                for step in (s for s, p in prefixes.items() if p == prefix):
                    looked = 0
                    for targets in queues[cells[(pointer + step) % len(cells)]]:
                        if looked == SCAN_LIMIT:
                            break  # enough candidates from this cell: keeps big designs fast
                        if used.isdisjoint(targets):
                            looked += 1
                            score = (*prefix, min(left[t] for t in targets), -step)
                            if best is None or score > best:
                                best, choice = score, (step, targets)
                if choice is not None:
                    break  # a lower prefix cannot win
            if choice is None:
                break  # every remaining unit repeats a target of this HIT: close it short
            step, targets = choice
            cell = cells[(pointer + step) % len(cells)]
            picked = queues[cell][targets].popleft()
            if not queues[cell][targets]:
                del queues[cell][targets]
            pointer = (pointer + step + 1) % len(cells)
            hit.append(picked)
            used.update(picked.targets)
            models_in_hit[picked.model] = models_in_hit.get(picked.model, 0) + 1
            losses_in_hit[picked.loss] = losses_in_hit.get(picked.loss, 0) + 1
            model_left[picked.model] -= 1
            loss_left[picked.loss] -= 1
            for t in picked.targets:
                left[t] -= 1
            remaining -= 1
        hits.append(hit)
    return hits


PACKING_TRIES = 8  # greedy deals tried; fewer for big designs, where balance comes easily
SCAN_LIMIT = 16  # candidate units looked at per cell and pick


def imbalance(hits: list[list[Unit]]) -> int:
    """How far the packing is from every HIT showing each model and loss equally often."""
    models = sorted({u.model for h in hits for u in h})
    losses = sorted({u.loss for h in hits for u in h})
    total = 0
    for hit in hits:
        for levels, attribute in ((models, "model"), (losses, "loss")):
            counts = Counter(getattr(u, attribute) for u in hit)
            shown = [counts.get(level, 0) for level in levels]
            total += max(0, max(shown) - min(shown) - 1)
    return total + len(hits)  # fewer (fuller) HITs are better too


def best_packing(units: list[Unit], per_hit: int, seed: int) -> list[list[Unit]]:
    """The most balanced of a few greedy deals (each from its own seeded shuffle)."""
    best: list[list[Unit]] | None = None
    best_score = 0
    tries = PACKING_TRIES if len(units) <= 2000 else 2
    for attempt in range(tries):
        hits = pack_units(units, per_hit, random.Random(seed + attempt))
        score = imbalance(hits)
        if best is None or score < best_score:
            best, best_score = hits, score
        if score == math.ceil(len(units) / per_hit):
            break  # perfectly balanced and no HIT closed short
    assert best is not None
    return best


def _balanced_sides(n: int, choices: int, rng: random.Random) -> list[int]:
    sides = [i % choices for i in range(n)]
    rng.shuffle(sides)
    return sides


def _ordered(query: tuple[str, ...], targets: tuple[str, ...], rng: random.Random
             ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Matching: options = the query's targets shuffled; answer[i] = index of targets[i]."""
    options = list(targets)
    rng.shuffle(options)
    return tuple(options), tuple(options.index(t) for t in targets)


# ----------------------------------------------------------------- task types

Shown = tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]  # query, options, answer


class TaskType(Protocol):
    """What one task type decides; packing, catch placement, repeats and IDs are shared.

    A new task type is a class with these members, registered in TASKS, plus its entry
    in the page's TASKS (hitkit/survey/frontend/static/survey.js); the study config lists
    the names it accepts (hitkit.study.config.SurveySection.task).
    """

    name: str
    # the answer on the wire: one option index, or a list of one per query image
    single_choice: bool

    def check(self, survey: SurveySection, targets: list[str]) -> None:
        """Refuse (DesignError) a design these targets cannot make."""
        ...

    def units(self, rows: list[dict[str, Any]], survey: SurveySection,
              rng: random.Random) -> list[Unit]:
        """The main trials' contents, before sides and order are drawn."""
        ...

    def main(self, survey: SurveySection, unit: Unit, side: int, rng: random.Random) -> Shown:
        """A main trial; `side` (0 or 1) is balanced within the HIT."""
        ...

    def catch(self, survey: SurveySection, fresh: list[str], targets: list[str],
              seed_pool: list[str], side: int, rng: random.Random) -> Shown:
        """An obvious trial, preferring targets in `fresh` (and taking those it shows out)."""
        ...

    def practice(self, survey: SurveySection, targets: list[str], seed_pool: list[str],
                 rng: random.Random) -> Shown:
        """The practice trial: obvious, answered with feedback."""
        ...


class TwoAFC:
    name = "2afc"
    single_choice = True

    def check(self, survey, targets):
        """Nothing to refuse yet: the foil rule needs the manifest's rows, units() checks it."""

    def units(self, rows, survey, rng):
        targets = sorted({r["target_id"] for r in rows})
        if survey.foil == "other-target" and len(targets) < 2:
            raise DesignError("survey.foil 'other-target' needs two or more targets in the manifest")
        units = []
        for r in rows:
            if survey.foil == "seed":
                foil = r["seed_id"]
            else:
                foil = rng.choice([t for t in targets if t != r["target_id"]])
            units.append(Unit((r["iri_id"],), (r["target_id"],), foil, r["model"], r["loss"]))
        return units

    def main(self, survey, unit, side, rng):
        target = unit.targets[0]
        return unit.iris, (target, unit.foil) if side == 0 else (unit.foil, target), (side,)

    def catch(self, survey, fresh, targets, seed_pool, side, rng):
        target = rng.choice(fresh if fresh else targets)
        if target in fresh:
            fresh.remove(target)  # catch trials too show a target once, when they can
        foil = rng.choice([t for t in targets if t != target] or seed_pool)
        return (target,), (target, foil) if side == 0 else (foil, target), (side,)

    def practice(self, survey, targets, seed_pool, rng):
        target = rng.choice(targets)
        foil = rng.choice([t for t in targets if t != target] or seed_pool)
        side = rng.randint(0, 1)
        return (target,), (target, foil) if side == 0 else (foil, target), (side,)


class Matching:
    name = "matching"
    single_choice = False

    @staticmethod
    def k(survey: SurveySection) -> int:
        return int(survey.k or 2)

    def check(self, survey, targets):
        if survey.catch_per_hit and len(targets) < 2:
            raise DesignError("catch trials for matching need k or more targets")
        k = self.k(survey)
        if len(targets) < k:
            raise DesignError(f"matching with k={k} needs {k} targets; the manifest has {len(targets)}")

    def units(self, rows, survey, rng):
        k = self.k(survey)
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            cells.setdefault((r["model"], r["loss"]), []).append(r)
        units = []
        for (model, loss), cell_rows in sorted(cells.items()):
            pool = list(cell_rows)
            rng.shuffle(pool)
            while len(pool) >= k:
                group: list[dict[str, Any]] = []
                for r in list(pool):
                    if r["target_id"] not in {g["target_id"] for g in group}:
                        group.append(r)
                        pool.remove(r)
                        if len(group) == k:
                            break
                if len(group) < k:
                    break  # the rest share targets: they cannot make a matching trial
                units.append(Unit(tuple(g["iri_id"] for g in group),
                                  tuple(g["target_id"] for g in group), None, model, loss))
        if not units:
            raise DesignError(f"matching with k={k}: no model and loss has {k} IRIs of distinct targets")
        return units

    def main(self, survey, unit, side, rng):
        order = list(range(len(unit.iris)))
        rng.shuffle(order)
        query = tuple(unit.iris[i] for i in order)
        return (query, *_ordered(query, tuple(unit.targets[i] for i in order), rng))

    def catch(self, survey, fresh, targets, seed_pool, side, rng):
        k = self.k(survey)
        group = tuple(rng.sample(fresh if len(fresh) >= k else targets, k))
        fresh[:] = [t for t in fresh if t not in group]
        return (group, *_ordered(group, group, rng))

    def practice(self, survey, targets, seed_pool, rng):
        group = tuple(rng.sample(targets, self.k(survey)))
        return (group, *_ordered(group, group, rng))


TASKS: dict[str, TaskType] = {task.name: task for task in (TwoAFC(), Matching())}


def build_hit(
    ordinal: int,
    design_id: str,
    units: list[Unit],
    config: StudyConfig,
    all_targets: list[str],
    seed_pool: list[str],
    rng: random.Random,
) -> Hit:
    survey = config.survey
    task = survey.task
    task_type = TASKS[task]
    chance = survey.chance
    hit_id = f"{design_id}-h{ordinal:04d}"
    n_main = len(units)
    n_repeat = survey.repeats_for(n_main)
    n_catch = survey.catch_per_hit

    # main trials, sides balanced within the HIT
    mains: list[dict[str, Any]] = []
    sides = _balanced_sides(n_main, 2, rng)
    for unit, side in zip(units, sides, strict=True):
        query, options, answer = task_type.main(survey, unit, side, rng)
        mains.append({"kind": "main", "query": query, "options": options, "answer": answer,
                      "model": unit.model, "loss": unit.loss, "key": len(mains)})

    # catch trials: targets the HIT's main trials do not use, when there are enough
    used = {t for u in units for t in u.targets}
    fresh = [t for t in all_targets if t not in used]
    catches: list[dict[str, Any]] = []
    catch_sides = _balanced_sides(n_catch, 2, rng)
    for side in catch_sides:
        query, options, answer = task_type.catch(survey, fresh, all_targets, seed_pool, side, rng)
        catches.append({"kind": "catch", "query": query, "options": options,
                        "answer": answer, "model": None, "loss": None})

    repeated = rng.sample(range(n_main), n_repeat)
    if task_type.single_choice:
        # foils drawn from the trials' own correct options (see the module docstring)
        mains_balanced = survey.foil == "other-target"
        _balance_foils(mains if mains_balanced else [], catches, repeated, rng)

    # order: mains shuffled, repeats inserted after their original, catch never first
    order = list(mains)
    rng.shuffle(order)
    for original in (mains[i] for i in repeated):
        at = order.index(original)
        reversed_options = tuple(reversed(original["options"]))
        swapped = tuple(len(original["options"]) - 1 - a for a in original["answer"])
        repeat = dict(original, kind="repeat", options=reversed_options, answer=swapped,
                      repeats=original["key"])
        # at least one other trial in between when there is room, so it is not an echo
        order.insert(rng.randint(min(at + 2, len(order)), len(order)), repeat)
    for catch in catches:
        order.insert(rng.randint(1, len(order)), catch)

    positions = {id(t): i for i, t in enumerate(order)}
    trial_ids = [f"{hit_id}-t{i:03d}" for i in range(len(order))]
    by_key = {t["key"]: trial_ids[positions[id(t)]] for t in order if t["kind"] == "main"}
    trials = tuple(
        Trial(
            trial_id=trial_ids[i], hit_id=hit_id, position=i, task=task, kind=t["kind"],
            query=tuple(t["query"]), options=tuple(t["options"]), answer=tuple(t["answer"]),
            chance=chance, repeat_of=by_key[t["repeats"]] if t["kind"] == "repeat" else None,
            model=t["model"], loss=t["loss"],
        )
        for i, t in enumerate(order)
    )

    # practice: an obvious trial (a target against others), answered with feedback
    query, options, answer = task_type.practice(survey, all_targets, seed_pool, rng)
    practice = {"query": list(query), "options": list(options), "answer": list(answer)}
    return Hit(hit_id=hit_id, ordinal=ordinal, trials=trials, practice=practice)


def _with_foil(trial: dict[str, Any], foil: str) -> None:
    """Set a 2AFC trial's foil in place, keeping its correct option's side."""
    side = trial["answer"][0]
    correct = trial["options"][side]
    trial["options"] = (correct, foil) if side == 0 else (foil, correct)


def _balance_foils(mains: list[dict[str, Any]], catches: list[dict[str, Any]],
                   repeated: list[int], rng: random.Random) -> None:
    """Choose 2AFC foils so that, over the HIT's trials (repeats included), every image is
    a correct option as often as it is a foil.

    Repeated main trials go in pairs that swap their correct options (A vs B, B vs A): a
    repeat then adds one correct and one foil showing to each. The other main trials take
    their foils as a derangement of their correct options (no trial its own), and so do
    the catch trials, apart: a catch trial is answered by anyone who compares pixels, and
    linking it to main trials would hand those answers over too. Where no derangement can
    be drawn (one trial left, or one image making up more than half), the foils drawn
    before stay.
    """
    paired = list(repeated[: len(repeated) - len(repeated) % 2]) if mains else []
    for a, b in zip(paired[::2], paired[1::2], strict=True):
        ca, cb = _correct(mains[a]), _correct(mains[b])
        _with_foil(mains[a], cb)
        _with_foil(mains[b], ca)
    taken = set(paired)
    _derange([t for i, t in enumerate(mains) if i not in taken], rng)
    _derange(catches, rng)


def _correct(trial: dict[str, Any]) -> str:
    return trial["options"][trial["answer"][0]]


def _derange(pool: list[dict[str, Any]], rng: random.Random) -> None:
    """Give each trial of `pool` another trial's correct option as its foil."""
    corrects = [_correct(t) for t in pool]
    if len(pool) < 2:
        return
    for _ in range(200):
        foils = list(corrects)
        rng.shuffle(foils)
        if all(f != c for f, c in zip(foils, corrects, strict=True)):
            for trial, foil in zip(pool, foils, strict=True):
                _with_foil(trial, foil)
            return


def design_id_for(rows: list[dict[str, Any]], config: StudyConfig) -> str:
    survey = config.survey.model_dump(
        include={"task", "k", "foil", "trials_per_hit", "catch_per_hit", "repeat_share", "seed"}
    )
    text = json.dumps({"iris": [r["iri_id"] for r in rows], "survey": survey,
                       "seed": config.study.seed}, sort_keys=True)
    return "d" + hashlib.sha256(text.encode()).hexdigest()[:10]


def make_design(manifest: pa.Table, config: StudyConfig) -> Design:
    """The whole design, deterministic for the manifest, the survey settings and the seeds."""
    rows = manifest_rows(manifest)
    if not rows:
        raise DesignError("manifest: no IRIs")
    survey = config.survey
    seed = config.study.seed * 1_000_003 + survey.seed
    rng = random.Random(seed)
    all_targets = sorted({r["target_id"] for r in rows})
    seed_pool = sorted({r["seed_id"] for r in rows})
    TASKS[survey.task].check(survey, all_targets)
    units = make_units(rows, config, rng)
    notes: list[str] = []
    per_hit = survey.main_trials_capacity(len(all_targets))
    if per_hit < survey.main_trials_per_hit:
        notes.append(
            f"{survey.main_trials_per_hit} main trials per HIT would show a target twice (the "
            f"manifest has {len(all_targets)} targets); HITs hold {per_hit} main trials instead"
        )
    design_id = design_id_for(rows, config)
    packed = best_packing(units, per_hit, rng.getrandbits(64))
    hits = [
        build_hit(i, design_id, hit_units, config, all_targets, seed_pool, rng)
        for i, hit_units in enumerate(packed)
    ]
    short = sum(1 for h in packed if len(h) < min(per_hit, len(units)) - 1)
    if short:
        notes.append(f"{short} HIT(s) closed short to keep every target once per HIT")
    return Design(design_id=design_id, task=survey.task, seed=seed, hits=hits, notes=notes)

