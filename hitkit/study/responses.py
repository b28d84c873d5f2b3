"""responses.parquet: one tidy row per response, written by `hitkit export`.

Participants appear only as keyed pseudonyms; raw platform IDs stay in the ledger.
"""

import pyarrow as pa

from hitkit.study.tables import Column, TableSchema

RESPONSES = TableSchema(
    name="responses",
    owner="hitkit.study.responses",
    columns=(
        Column("response_id", pa.string(), "stable ID of the response"),
        Column("trial_id", pa.string(), "trial the response answers (joins trials.parquet)"),
        Column("hit_id", pa.string(), "HIT the trial belongs to"),
        Column("assignment_id", pa.string(), "hitkit's ID of the participant's assignment"),
        Column("participant", pa.string(), "HMAC-SHA256 pseudonym of the platform's participant ID"),
        Column("task", pa.string(), "\"2afc\" or \"matching\""),
        Column("kind", pa.string(), "\"main\", \"catch\" or \"repeat\""),
        Column("position", pa.int32(), "0-based order of the trial within its HIT"),
        Column("iri_id", pa.string(), "the IRI judged (the target ID for catch trials)"),
        Column("model", pa.string(), "model of the IRI (\"\" for catch trials)"),
        Column("target_id", pa.string(), "the IRI's target image"),
        Column("seed_id", pa.string(), "the IRI's seed image (\"\" for catch trials)"),
        Column("loss", pa.string(), "loss the IRI was made with (\"\" for catch trials)"),
        Column("layer", pa.string(), "layer the IRI matches (\"\" for catch trials)"),
        Column("choice", pa.int32(), "index of the option the participant chose"),
        Column("answer", pa.int32(), "index of the correct option"),
        Column("correct", pa.bool_(), "choice == answer, computed on the server"),
        Column("rt_ms", pa.float64(), "reaction time in milliseconds from the trial's display "
               "(empty: not recorded, e.g. an imported MTurk archive without rt_<trial> columns)",
               nullable=True),
        Column("chance", pa.float64(), "chance rate of the trial: 1/2 (2afc) or 1/k (matching)"),
        Column("excluded", pa.bool_(), "excluded from analysis by a pre-registered [quality] rule"),
        Column("exclusion_reason", pa.string(),
               "the rule(s) that excluded it, in words with the measured values", nullable=True),
        Column("platform", pa.string(), "\"local\", \"prolific\" or \"mturk\""),
        Column("submitted_at", pa.timestamp("us", tz="UTC"), "when the assignment was submitted (UTC)"),
        # a list, not a joined string: a reader counts codes without splitting text
        Column("exclusion_rules", pa.list_(pa.string()),
               "codes of the [quality] rules that excluded it (hitkit.study.exclusions); "
               "[] when kept", nullable=True, added_later=True),
    ),
)

RESPONSES_FILE = "responses.parquet"  # the table's file name in a study folder
