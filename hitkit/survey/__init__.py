"""The human side of a study: trial design, HITs, the ledger, assignments and submissions,
quality control, export, simulated participants. The web app (hitkit.survey.web) sits on top
of it; platforms (hitkit.platforms) use it."""
