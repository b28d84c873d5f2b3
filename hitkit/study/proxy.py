"""proxy.csv: one row per model and loss, written by `hitkit proxy`.

The machine 2AFC stand-in's alignment (generation.proxy computes it); analysis
reads it back to calibrate the proxy against people.
"""

PROXY_FILE = "proxy.csv"  # the table's file name in a study folder
COLUMNS = ("model", "loss", "metric", "n_iris", "n_targets", "alignment", "ci_low", "ci_high",
           "mean_margin", "median_rep_error")  # then one column per factor in [analysis].factors
