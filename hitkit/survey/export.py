"""`hitkit export`: responses.parquet, one tidy row per response, pseudonymised.

A 2AFC trial gives one row; a matching trial gives one row per query IRI (its
chosen option against its correct one). Rows are joined with the IRI's model,
loss, layer, target and seed from the manifest and with the model's factors
from study.toml; `correct` is computed here, on the requester's side. The
participant column is an HMAC of the platform ID under the study secret: the
raw ID stays in the ledger. Only confirmed submissions are exported, and exclusions are
the verdicts `hitkit review` recorded: when [quality] changed since, export stops with
an error naming the changed fields (hitkit.survey.quality.recorded_verdicts).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from hitkit.study.config import Study
from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
from hitkit.study.responses import RESPONSES, RESPONSES_FILE
from hitkit.study.tables import read_table, write_table
from hitkit.survey.ledger import Ledger
from hitkit.survey.pseudonym import load_or_create_secret, pseudonym
from hitkit.survey.quality import recorded_verdicts


def response_rows(study: Study, ledger: Ledger, manifest: pa.Table) -> list[dict[str, Any]]:
    config = study.config
    secret = load_or_create_secret(study.secret_path)
    iris = {r["iri_id"]: r for r in manifest.select(
        ["iri_id", "model", "loss", "layer", "target_id", "seed_id"]).to_pylist()}
    factors = config.analysis.factors
    model_factors = {m.name: m.factors for m in config.models}
    # the verdicts `hitkit review` recorded (and `hitkit pay` used), never recomputed here
    verdicts = recorded_verdicts(ledger, config.quality)
    rows = ledger.query(
        """SELECT r.response_id, r.trial_id, r.choice, r.rt_ms, t.hit_id, t.task, t.kind,
                  t.position, t.query, t.options, t.answer, a.assignment_id, a.participant_key,
                  a.platform, a.submitted_at
           FROM responses r JOIN trials t USING (trial_id)
           JOIN assignments a ON a.assignment_id = r.assignment_id
           WHERE a.state != 'started' AND a.confirmation = 'confirmed'
           ORDER BY a.submitted_at, a.assignment_id, t.position""")
    pseudonyms: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for r in rows:
        key = r["participant_key"]
        if key not in pseudonyms:
            pseudonyms[key] = pseudonym(secret, key)
        query, options = json.loads(r["query"]), json.loads(r["options"])
        answer, choice = json.loads(r["answer"]), json.loads(r["choice"])
        verdict = verdicts[r["assignment_id"]]
        rules = json.loads(verdict["exclusion_rules"]) if verdict["exclusion_rules"] else []
        for i, image in enumerate(query):
            iri = iris.get(image) if r["kind"] != "catch" else None
            level = model_factors.get(iri["model"], {}) if iri else {}
            row = {
                "response_id": r["response_id"] if len(query) == 1 else f"{r['response_id']}-{i}",
                "trial_id": r["trial_id"], "hit_id": r["hit_id"],
                "assignment_id": r["assignment_id"], "participant": pseudonyms[key],
                "task": r["task"], "kind": r["kind"], "position": r["position"],
                "iri_id": image,
                "model": iri["model"] if iri else "",
                "target_id": iri["target_id"] if iri else image,
                "seed_id": iri["seed_id"] if iri else "",
                "loss": iri["loss"] if iri else "",
                "layer": iri["layer"] if iri else "",
                "choice": choice[i], "answer": answer[i], "correct": choice[i] == answer[i],
                "rt_ms": r["rt_ms"], "chance": 1.0 / len(options),
                "excluded": bool(verdict["excluded"]), "exclusion_rules": rules,
                "exclusion_reason": verdict["exclusion_reason"],
                "platform": r["platform"],
                "submitted_at": datetime.fromisoformat(r["submitted_at"]),
            }
            for factor in factors:
                row[factor] = level.get(factor, "")
            out.append(row)
    return out


def export_responses(study: Study, ledger: Ledger, path: str | Path | None = None) -> tuple[Path, int]:
    manifest = read_table(study.root / MANIFEST_FILE, MANIFEST)
    rows = response_rows(study, ledger, manifest)
    table = RESPONSES.to_table(rows, study.config.analysis.factors)
    target = Path(path) if path is not None else study.root / RESPONSES_FILE
    write_table(table, target)
    ledger.event("exported", None, rows=len(rows), file=target.name)
    return target, len(rows)
