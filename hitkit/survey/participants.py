"""Simulated participants that take the survey through the same HTTP API as a browser.

Behaviours
- attentive: judges each option by its image similarity to the query (box-window
  SSIM, see `box_ssim`; not the Gaussian-window SSIM of the manifest's distances)
  and chooses by a psychometric function: utility = slope * (similarity + noise) plus
  Gumbel noise (a logistic choice in 2AFC), with a lapse rate of random answers.
- random: uniform choices at an ordinary pace.
- fast: uniform choices in 80-250 ms (fast guessing).
- side_biased: the first option (left) nine times in ten.

Each simulated participant starts an assignment, fetches its HIT, downloads the
images like a browser would, answers every trial and submits. The demo, the load
benchmark and the analysis tests get their data this way.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import random
import ssl
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment
from skimage.metrics import structural_similarity
from skimage.transform import resize

from hitkit.survey.design import TASKS

BEHAVIOURS = ("attentive", "random", "fast", "side_biased")


class SimulationError(ValueError):
    pass


@dataclass(frozen=True)
class Psychometric:
    slope: float = 25.0  # logit change per unit of box-window SSIM difference
    noise: float = 0.03  # s.d. of noise added to each similarity judgement
    lapse: float = 0.04  # share of trials answered at random


def parse_mix(text: str) -> dict[str, float]:
    """'attentive=0.8,random=0.2' -> shares that sum to 1."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in BEHAVIOURS:
            raise SimulationError(
                f"--mix: {part!r} is not NAME=SHARE with NAME one of {', '.join(BEHAVIOURS)}")
        try:
            share = float(value)
        except ValueError:
            raise SimulationError(f"--mix: {name}={value!r}: the share is not a number") from None
        if not math.isfinite(share) or share < 0:
            raise SimulationError(f"--mix: {name}={value}: the share must be >= 0")
        mix[name] = mix.get(name, 0.0) + share
    total = sum(mix.values())
    if total <= 0:
        raise SimulationError("--mix: give at least one behaviour with a positive share")
    return {name: share / total for name, share in mix.items()}


def allocate(n: int, mix: dict[str, float], rng: random.Random) -> list[str]:
    """Exactly n behaviours in the mix's proportions (largest remainder), shuffled."""
    quotas = {name: n * share for name, share in mix.items()}
    counts = {name: int(q) for name, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda name: quotas[name] - counts[name], reverse=True)
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    people = [name for name in mix for _ in range(counts[name])]
    rng.shuffle(people)
    return people


class Judge:
    """Image similarity (box-window SSIM) between downloaded images, cached by content."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._similarity: dict[tuple[str, str], float] = {}

    def key(self, data: bytes) -> str:
        digest = hashlib.sha1(data).hexdigest()
        if digest not in self._arrays:
            with Image.open(io.BytesIO(data)) as image:
                self._arrays[digest] = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        return digest

    def similarity(self, a: str, b: str) -> float:
        pair = (a, b) if a <= b else (b, a)
        if pair not in self._similarity:
            self._similarity[pair] = 1.0 if a == b else box_ssim(self._arrays[a], self._arrays[b])
        return self._similarity[pair]


def box_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM over uniform (box) 7x7 windows, averaged over the RGB channels.

    scikit-image's `structural_similarity` with its defaults: equally weighted windows,
    sample (n-1) variances, the border half-window left out; `y` is resized to `x`'s
    shape first. Images under 7 px use the largest odd window that fits, and under 3 px
    1 - mean absolute difference. This is the simulated participants' judge only: the
    manifest's `ssim` distance (generation.distances) is a different computation, with
    a Gaussian window (11 px, sigma 1.5) and population variances, so the two numbers
    differ for the same pair of images.
    """
    if x.shape != y.shape:
        y = resize(y, x.shape, anti_aliasing=True)
    side = min(x.shape[0], x.shape[1])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return float(1.0 - np.abs(x - y).mean())
    return float(structural_similarity(x, y, channel_axis=-1, data_range=1.0, win_size=win))


def choose(behaviour: str, similarities: np.ndarray, rng: random.Random,
           psychometric: Psychometric) -> tuple[list[int], float]:
    """(choice, rt_ms) for one trial; similarities[i, j] = sim(query i, option j)."""
    n_query, n_options = similarities.shape
    factor = n_query  # a matching trial takes one judgement per query image
    if behaviour == "attentive" and rng.random() >= psychometric.lapse:
        noisy = similarities + np.array(
            [[rng.gauss(0, psychometric.noise) for _ in range(n_options)] for _ in range(n_query)])
        utility = psychometric.slope * noisy + np.array(
            [[-math.log(-math.log(rng.random() or 1e-12)) for _ in range(n_options)]
             for _ in range(n_query)])
        choice = _best_assignment(utility)
        rt = rng.lognormvariate(math.log(950), 0.35) * factor
    elif behaviour == "side_biased":
        choice = list(range(n_query)) if rng.random() < 0.9 else _random_choice(
            n_query, n_options, rng)
        rt = rng.lognormvariate(math.log(650), 0.3) * factor
    elif behaviour == "fast":
        choice = _random_choice(n_query, n_options, rng)
        rt = rng.uniform(80, 250) * factor
    else:  # random, or an attentive participant's lapse
        choice = _random_choice(n_query, n_options, rng)
        rt = rng.lognormvariate(math.log(800), 0.4) * factor
    return choice, round(rt, 1)


def _random_choice(n_query: int, n_options: int, rng: random.Random) -> list[int]:
    if n_query == 1:
        return [rng.randrange(n_options)]
    return rng.sample(range(n_options), n_query)


def _best_assignment(utility: np.ndarray) -> list[int]:
    if utility.shape[0] == 1:
        return [int(np.argmax(utility[0]))]
    rows, cols = linear_sum_assignment(utility, maximize=True)
    return [int(c) for _, c in sorted(zip(rows, cols, strict=True))]


@dataclass
class Outcome:
    behaviour: str
    assignment_id: str | None = None
    completion_code: str | None = None
    responses: int = 0
    submit_seconds: float | None = None
    error: str | None = None
    duplicate_checked: bool = False


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def completed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.completion_code]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.completion_code]


async def take_part(client: httpx.AsyncClient, token: str, participant: str, behaviour: str,
                    rng: random.Random, judge: Judge, psychometric: Psychometric,
                    replay: bool = False) -> Outcome:
    outcome = Outcome(behaviour)
    reply = await client.post("/api/assignments", json={"token": token, "participant": participant})
    if reply.status_code >= 400:
        outcome.error = _message(reply)
        return outcome
    outcome.assignment_id = assignment_id = reply.json()["assignment_id"]
    hit = (await client.get(f"/api/assignments/{assignment_id}")).json()
    responses = []
    for trial in hit["trials"]:
        query = [judge.key(await _image(client, url)) for url in trial["query"]]
        options = [judge.key(await _image(client, url)) for url in trial["options"]]
        similarities = np.array([[judge.similarity(q, o) for o in options] for q in query])
        choice, rt = choose(behaviour, similarities, rng, psychometric)
        responses.append({"trial_id": trial["trial_id"],
                          "choice": choice[0] if TASKS[hit["task"]].single_choice else choice, "rt_ms": rt})
    payload = {"responses": responses, "client": {"simulated": behaviour}}
    started = time.perf_counter()
    reply = await client.post(f"/api/assignments/{assignment_id}/submit", json=payload)
    outcome.submit_seconds = time.perf_counter() - started
    if reply.status_code != 200:
        outcome.error = _message(reply)
        return outcome
    outcome.completion_code = reply.json()["completion_code"]
    outcome.responses = len(responses)
    if replay:  # a browser retrying after a lost reply: must not store a second copy
        again = await client.post(f"/api/assignments/{assignment_id}/submit", json=payload)
        body = again.json()
        if again.status_code != 200 or body.get("completion_code") != outcome.completion_code \
                or not body.get("duplicate"):
            outcome.error = f"replay answered {again.status_code}: {body}"
        outcome.duplicate_checked = True
    return outcome


async def _image(client: httpx.AsyncClient, url: str) -> bytes:
    reply = await client.get(url)
    reply.raise_for_status()
    return reply.content


def _message(reply: httpx.Response) -> str:
    try:
        return f"{reply.status_code}: {reply.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{reply.status_code}: {reply.text[:200]}"


async def simulate_async(url: str, token: str, behaviours: list[str], seed: int = 0,
                         concurrency: int = 50, psychometric: Psychometric | None = None,
                         replay_share: float = 0.0, progress=None) -> Report:
    psychometric = psychometric or Psychometric()
    judge = Judge()
    report = Report()
    gate = asyncio.Semaphore(max(1, concurrency))
    # one client (one connection) per participant, as browsers are; one TLS context for all
    tls = ssl.create_default_context()

    async def one(index: int, behaviour: str) -> Outcome:
        rng = random.Random(f"{seed}:{index}")
        async with gate:
            try:
                async with httpx.AsyncClient(base_url=url, timeout=60.0, verify=tls) as client:
                    outcome = await take_part(
                        client, token, f"sim-{seed}-{index}", behaviour, rng, judge, psychometric,
                        replay=rng.random() < replay_share)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                outcome = Outcome(behaviour, error=f"{type(exc).__name__}: {exc}")
        if progress is not None:
            progress()
        return outcome

    started = time.perf_counter()
    report.outcomes = list(await asyncio.gather(*(one(i, b) for i, b in enumerate(behaviours))))
    report.wall_seconds = time.perf_counter() - started
    return report


def simulate(url: str, token: str, n: int, mix: dict[str, float], seed: int = 0,
             concurrency: int = 50, psychometric: Psychometric | None = None,
             replay_share: float = 0.0, progress=None) -> Report:
    behaviours = allocate(n, mix, random.Random(seed))
    return asyncio.run(simulate_async(url, token, behaviours, seed, concurrency, psychometric,
                                      replay_share, progress))
