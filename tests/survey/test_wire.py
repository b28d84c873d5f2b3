"""What a HIT's HTTP exchange gives away, tried as the attacks of issue 12 (observations 5
and 6): a script that reads sizes, hashes, headers and URLs, but never decodes a picture,
must not find the catch trials, the repeats or any correct option, and so passes the
quality rules no more often than a participant who guesses."""

import hashlib
import io
import random
import struct
import zlib
from collections import Counter

import httpx
import numpy as np
import pytest
from PIL import Image
from survey_helpers import make_config, make_manifest, make_study

from hitkit.platforms.local import publish_local
from hitkit.study.config import QualitySection
from hitkit.study.images import ImageStore
from hitkit.study.manifest import MANIFEST
from hitkit.study.tables import read_table
from hitkit.survey.design import make_design
from hitkit.survey.hits import hit_trials, store_design
from hitkit.survey.ledger import Ledger
from hitkit.survey.quality import Answered, assess
from hitkit.survey.served_images import SlotImages
from hitkit.survey.web.app import create_app
from hitkit.survey.web.serving import background_server

DEMO_RULES = QualitySection(min_catch_accuracy=0.8, min_median_rt_ms=300, fast_rt_ms=250,
                            max_fast_share=0.5, max_side_bias=0.9)


# ------------------------------------------------------------- the attacks


def forced_answers(trials: list[tuple[tuple[str, ...], int]]) -> dict[int, int]:
    """Hash elimination. `trials`: (the identities of a trial's options, e.g. their hashes,
    and the trial's index). Main trials never share a correct image, so an option is the
    answer when picking the other one leaves no way to give every trial its own correct
    image (bipartite matching). Returns {trial index: forced option}."""
    def matchable(fixed: dict[int, int]) -> bool:
        owner: dict[str, int] = {}

        def augment(t: int, seen: set[str]) -> bool:
            options, _ = trials[t]
            allowed = [fixed[t]] if t in fixed else range(len(options))
            for o in allowed:
                image = options[o]
                if image in seen:
                    continue
                seen.add(image)
                if image not in owner or augment(owner[image], seen):
                    owner[image] = t
                    return True
            return False

        return all(augment(t, set()) for t in range(len(trials)))

    forced = {}
    if not matchable({}):
        return forced
    for t, (options, index) in enumerate(trials):
        possible = [o for o in range(len(options)) if matchable({t: o})]
        if len(possible) == 1:
            forced[index] = possible[0]
    return forced


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def fingerprints(data: bytes) -> dict[str, str]:
    """What a script can hash without decoding pixels: the file, the file without its
    ancillary chunks, and the inflated (still filtered) image data."""
    critical = b"".join(kind + body for kind, body in png_chunks(data) if kind[:1].isupper())
    idat = b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT")
    return {"file": hashlib.sha256(data).hexdigest(),
            "critical": hashlib.sha256(critical).hexdigest(),
            "inflated": hashlib.sha256(zlib.decompress(idat)).hexdigest()}


def wire_view(client: httpx.Client, hit: dict) -> list[dict]:
    """Everything the HIT's image requests carry, per trial (no pixel decoded)."""
    trials = []
    for t in hit["trials"]:
        seen = {}
        for role in ("query", "options"):
            seen[role] = []
            for url in t[role]:
                reply = client.get(url)
                assert reply.status_code == 200
                headers = {k: v for k, v in reply.headers.items() if k != "date"}
                seen[role].append({"size": int(reply.headers["content-length"]), "headers": headers,
                                   **fingerprints(reply.content), "url": url})
        trials.append({"trial_id": t["trial_id"], **seen})
    return trials


def cheap_script(view: list[dict], rng: random.Random) -> tuple[dict[str, int], dict]:
    """The observed attack: catch trials by an odd-sized query, their answer and every other
    answer a hash fixes, repeats by a recurring query, the rest at random."""
    sizes = Counter(t["query"][0]["size"] for t in view)
    usual = sizes.most_common(1)[0][0]
    found = {"catch_by_size": 0, "by_hash": 0, "repeat_by_hash": 0}
    answers: dict[str, int] = {}
    first_by_query: dict[str, tuple[str, tuple[str, ...]]] = {}
    mains = []
    for i, t in enumerate(view):
        options = tuple(o["file"] for o in t["options"])
        query = t["query"][0]["file"]
        if t["query"][0]["size"] != usual:
            found["catch_by_size"] += 1
        for key in ("file", "critical", "inflated"):
            same = [o for o, opt in enumerate(t["options"]) if opt[key] == t["query"][0][key]]
            if same:
                answers[t["trial_id"]] = same[0]
                found["by_hash"] += 1
                break
        if query in first_by_query:
            found["repeat_by_hash"] += 1
        else:
            first_by_query[query] = (t["trial_id"], options)
            if t["trial_id"] not in answers:  # a catch trial's image may be a main's target
                mains.append((options, i))
    for index, option in forced_answers(mains).items():
        if view[index]["trial_id"] not in answers:
            answers[view[index]["trial_id"]] = option
            found["by_hash"] += 1
    for t in view:
        answers.setdefault(t["trial_id"], rng.randrange(len(t["options"])))
    return answers, found


# ------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A demo-like 2AFC study (12 targets, 8 catch trials per HIT), served by uvicorn."""
    root = tmp_path_factory.mktemp("wire") / "study"
    study = make_study(root, size=24, targets=12, trials_per_hit=20, catch_per_hit=8,
                       repeat_share=0.2, responses_per_iri=400)
    design = make_design(read_table(root / "manifest.parquet", MANIFEST), study.config)
    ledger = Ledger.for_study(root)
    store_design(ledger, design, study.config.survey.responses_per_iri)
    token = publish_local(study, ledger, open_link=True, cap=5000).links[0].token
    with background_server(create_app(study, ledger)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield study, ledger, client, token
    ledger.close()


def start(client: httpx.Client, token: str, n: int) -> tuple[str, dict]:
    reply = client.post("/api/assignments", json={"token": token, "participant": f"wire{n}"})
    assert reply.status_code == 201, reply.text
    aid = reply.json()["assignment_id"]
    return aid, client.get(f"/api/assignments/{aid}").json()


def test_image_bytes_give_nothing_away(served):
    """Observation 5 (Content-Length finds catch trials) and 6 (identical bytes)."""
    study, ledger, client, token = served
    aid, hit = start(client, token, 0)
    view = wire_view(client, hit)
    images = [i for t in view for role in ("query", "options") for i in t[role]]
    # one size, one set of headers, for every image of the HIT
    assert len({i["size"] for i in images}) == 1
    assert len({tuple(sorted(i["headers"].items())) for i in images}) == 1
    assert images[0]["headers"]["content-type"] == "image/png"
    assert images[0]["headers"]["cache-control"] == "no-store"
    # no two slots alike, not even with ancillary chunks stripped or the data inflated
    for key in ("file", "critical", "inflated"):
        assert len({i[key] for i in images}) == len(images), key
    # and yet each slot shows the stored image, pixel for pixel
    trial = hit_trials(ledger, hit["trials"][0]["trial_id"].rsplit("-t", 1)[0])[0]
    stored = np.asarray(Image.open(root_image(study, trial.options[1])).convert("RGB"))
    served_pixels = np.asarray(Image.open(io.BytesIO(client.get(hit["trials"][0]["options"][1]).content)))
    assert (stored == served_pixels).all()
    # fetching a slot again gives the same bytes (a diff of two fetches shows nothing)
    url = hit["trials"][0]["query"][0]
    assert client.get(url).content == client.get(url).content


def root_image(study, image_id: str):
    from hitkit.study.images import load_images

    return load_images(study.root).path(image_id)


def test_the_cheap_script_is_a_guesser(served):
    """The attack end to end: a script that answers what sizes and hashes give away and
    guesses the rest finds nothing, and passes the demo rules as rarely as a guesser."""
    study, ledger, client, token = served
    rng = random.Random(12)
    passed, catch_right, catch_total = 0, 0, 0
    runs = 30
    for n in range(1, runs + 1):
        aid, hit = start(client, token, n)
        view = wire_view(client, hit)
        answers, found = cheap_script(view, rng)
        assert found == {"catch_by_size": 0, "by_hash": 0, "repeat_by_hash": 0}
        responses = [{"trial_id": t["trial_id"], "choice": answers[t["trial_id"]], "rt_ms": 900.0}
                     for t in hit["trials"]]
        reply = client.post(f"/api/assignments/{aid}/submit", json={"responses": responses})
        assert reply.status_code == 200, reply.text
        hit_id = ledger.query_one("SELECT hit_id FROM assignments WHERE assignment_id = ?",
                                  (aid,))["hit_id"]
        answered = [Answered(t.trial_id, t.kind, t.repeat_of, t.options, t.answer,
                             (answers[t.trial_id],), 900.0) for t in hit_trials(ledger, hit_id)]
        verdict = assess(aid, answered, DEMO_RULES)
        passed += not verdict.excluded
        catches = [a for a in answered if a.kind == "catch"]
        catch_right += sum(a.choice == a.answer for a in catches)
        catch_total += len(catches)
    # a guesser: catch accuracy near one half (240 catch answers: 0.5 ± 0.1 is > 3 sd),
    # and 7 of 8 catch trials right 3.5 % of the time (9 or more passes of 30: p < 1e-6)
    assert 0.4 <= catch_right / catch_total <= 0.6, catch_right / catch_total
    assert passed <= 8


# ------------------------------------------------------------- the design


@pytest.mark.parametrize("shape", [
    dict(targets=12, models=8, losses=2, trials_per_hit=16, catch_per_hit=2, repeat_share=0.1),
    dict(targets=12, models=8, losses=2, trials_per_hit=20, catch_per_hit=8, repeat_share=0.1),
    dict(targets=40, models=4, losses=2, trials_per_hit=40, catch_per_hit=8, repeat_share=0.1),
    dict(targets=6, models=4, losses=2, trials_per_hit=8, catch_per_hit=2, repeat_share=0.2),
])
def test_knowing_every_image_fixes_no_main_answer(shape):
    """Observation 6 at its root: even an attacker who could tell which slots show the same
    image (the hashes of the old server) gets no main-trial answer, because every image
    shown as a correct option is a foil as often in the HIT."""
    config = make_config(**shape)
    design = make_design(make_manifest(config), config)
    fixed = total = 0
    for hit in design.hits:
        trials = hit.trials
        if config.survey.repeats_per_hit % 2 == 0:
            for kinds in (("main", "repeat"), ("catch",)):
                group = [t for t in trials if t.kind in kinds]
                correct = Counter(t.options[t.answer[0]] for t in group)
                foil = Counter(t.options[1 - t.answer[0]] for t in group)
                if len(group) >= 2:
                    assert correct == foil, (hit.hit_id, kinds)
        mains = [(t.options, i) for i, t in enumerate(trials) if t.kind == "main"]
        forced = forced_answers(mains)
        fixed += len(forced)
        total += len(mains)
    assert total and fixed == 0, f"{fixed} of {total} main answers fixed by image identity"


def test_the_elimination_attack_works_on_a_leaky_design():
    """The attack itself is sound: on trials whose correct images are never foils (the old
    design's rule, 'no target correct twice'), it fixes answers, and only right ones."""
    rng = random.Random(3)
    targets = [f"t{i}" for i in range(12)]
    trials, key = [], []
    for i, target in enumerate(targets):
        foil = rng.choice([t for t in targets + ["x1", "x2"] if t != target])
        side = rng.randrange(2)
        trials.append(((target, foil) if side == 0 else (foil, target), i))
        key.append(side)
    forced = forced_answers(trials)
    assert forced and all(key[i] == option for i, option in forced.items())


# ------------------------------------------------------------- the bytes


def test_slot_images_are_one_size_and_lossless(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.zeros((20, 20, 3), np.uint8)  # compresses to almost nothing
    noisy = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    for name, pixels in (("a", smooth), ("b", noisy)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    Image.fromarray(smooth[:10, :12]).convert("L").save(tmp_path / "c.png")  # smaller, grey
    slots = SlotImages(ImageStore(tmp_path, {i: f"{i}.png" for i in "abc"}), b"key")
    group = ("a", "b", "c")
    served = {(i, s): slots.slot_bytes(i, group, s) for i in "abc" for s in ("t0/q0", "t1/o1")}
    assert len({len(b) for b in served.values()}) == 1
    assert len({hashlib.sha256(b).digest() for b in served.values()}) == len(served)
    for (image_id, _), data in served.items():
        decoded = np.asarray(Image.open(io.BytesIO(data)))
        assert decoded.shape == (20, 20, 3)
        if image_id != "c":
            assert (decoded == (smooth if image_id == "a" else noisy)).all()
    # deterministic for a key and slot; another key gives other bytes
    assert slots.slot_bytes("a", group, "t0/q0") == served[("a", "t0/q0")]
    other = SlotImages(ImageStore(tmp_path, {i: f"{i}.png" for i in "abc"}), b"other")
    assert other.slot_bytes("a", group, "t0/q0") != served[("a", "t0/q0")]


def test_an_inlined_mturk_page_names_no_image_by_its_data_uri(tmp_path):
    """The HTMLQuestion page carries its images as data URIs: the same rules hold there."""
    import json
    import re

    from hitkit.platforms.mturk.question import inline_page
    from hitkit.study.images import load_images

    study = make_study(tmp_path / "study", size=8, targets=6, trials_per_hit=8, catch_per_hit=2)
    design = make_design(read_table(study.root / "manifest.parquet", MANIFEST), study.config)
    hit = design.hits[0]
    page = inline_page(study.config.survey, hit.trials, hit.practice, load_images(study.root))
    data = json.loads(re.search(r'id="hit-data">(.*?)</script>', page, re.S).group(1))
    uris = [u for t in data["trials"] for role in ("query", "options") for u in t[role]]
    assert len(set(uris)) == len(uris) and len({len(u) for u in uris}) == 1
    assert "answer" not in data["practice"]  # the page finds it: the query's URI is an option's
    assert data["practice"]["query"][0] in data["practice"]["options"]


@pytest.fixture
def s3_study(tmp_path, s3_server):
    """A study whose images live in moto's S3 server (store = s3://...), its manifest's
    URIs pointing there."""
    import boto3
    import pyarrow as pa
    import tomli_w

    from hitkit.study.config import load_study
    from hitkit.study.tables import write_table

    client = boto3.client("s3")
    client.create_bucket(Bucket="iris")
    root = tmp_path / "study"
    make_study(root, targets=6, trials_per_hit=8, catch_per_hit=2)
    manifest = read_table(root / "manifest.parquet", MANIFEST)
    for column in ("uri", "target_uri", "seed_uri"):
        uris = []
        for uri in manifest.column(column).to_pylist():
            client.put_object(Bucket="iris", Key=f"st/{uri}", Body=(root / uri).read_bytes())
            uris.append(f"s3://iris/st/{uri}")
        manifest = manifest.set_column(manifest.schema.get_field_index(column), column,
                                       pa.array(uris))
    write_table(manifest, root / "manifest.parquet")
    data = tomllib_load(root / "study.toml")
    data["study"]["store"] = "s3://iris/st"
    (root / "study.toml").write_text(tomli_w.dumps(data))
    return load_study(root), client, s3_server


def tomllib_load(path):
    import tomllib

    return tomllib.loads(path.read_text())


def test_s3_images_are_redirected_to_per_slot_copies(s3_study):
    """An S3 store: the app uploads each slot's own bytes once and redirects the browser,
    and what the browser gets is as anonymous as what the app serves itself."""
    study, s3, endpoint = s3_study
    design = make_design(read_table(study.root / "manifest.parquet", MANIFEST), study.config)
    ledger = Ledger.for_study(study.root)
    store_design(ledger, design, 50)
    token = publish_local(study, ledger, open_link=True, cap=50).links[0].token
    with background_server(create_app(study, ledger)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        aid, hit = start(client, token, 1)
        page = client.get("/?preview=1").headers["content-security-policy"]
        assert f"img-src 'self' {endpoint};" in page
        fetched, locations = [], set()
        for t in hit["trials"]:
            for image_url in (*t["query"], *t["options"]):
                reply = client.get(image_url)
                assert reply.status_code == 302 and reply.headers["cache-control"] == "no-store"
                location = reply.headers["location"]
                assert location.startswith(endpoint + "/iris/st/served/")
                assert "X-Amz-Signature" in location  # presigned: the bucket stays private
                name = location.split("?")[0].rsplit("/", 1)[1]  # an opaque name, no image ID
                assert len(name) == 44 and all(c in "0123456789abcdef" for c in name[:40])
                locations.add(location.split("?")[0])
                fetched.append(httpx.get(location).content)
        assert len({len(b) for b in fetched}) == 1
        assert len({hashlib.sha256(b).digest() for b in fetched}) == len(fetched)
        # again: the same slot objects, no new upload
        client.get(hit["trials"][0]["query"][0])
        served = s3.list_objects_v2(Bucket="iris", Prefix="st/served/")["KeyCount"]
        assert served == len(locations) == len(fetched)
    ledger.close()
