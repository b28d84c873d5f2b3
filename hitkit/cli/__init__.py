"""The `hitkit` command, the top layer: one module per stage group (see main.LAZY_COMMANDS)."""
