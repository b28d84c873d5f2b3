"""trials.parquet: one row per trial of every HIT, written by `hitkit design`.

The answer column stays on the requester's side: it is never sent to a browser.
"""

import pyarrow as pa

from hitkit.study.tables import Column, TableSchema

TRIALS = TableSchema(
    name="trials",
    owner="hitkit.study.trials",
    columns=(
        Column("trial_id", pa.string(), "stable ID of the trial"),
        Column("hit_id", pa.string(), "ID of the HIT (the unit one participant completes)"),
        Column("position", pa.int32(), "0-based order of the trial within its HIT"),
        Column("task", pa.string(), "\"2afc\" or \"matching\""),
        Column("kind", pa.string(), "\"main\", \"catch\" (obvious answer) or \"repeat\" (a main trial again, sides swapped)"),
        Column("query", pa.list_(pa.string()),
               "image IDs shown as the question: one IRI (2afc; the target itself for catch) or k IRIs (matching)"),
        Column("options", pa.list_(pa.string()), "image IDs offered as answers, in display order"),
        Column("answer", pa.list_(pa.int32()),
               "for each query image, the index of its correct option (requester only, never sent)"),
        Column("chance", pa.float64(), "probability of a correct answer by guessing: 1/2 or 1/k"),
        Column("repeat_of", pa.string(), "for a repeat, the trial_id it repeats", nullable=True),
        Column("model", pa.string(), "model of the IRI(s); empty for catch trials", nullable=True),
        Column("loss", pa.string(), "loss of the IRI(s); empty for catch trials", nullable=True),
    ),
)

TRIALS_FILE = "trials.parquet"  # the table's file name in a study folder
