"""`python -m hitkit.cli` (and `torchrun -m hitkit.cli`): the same as the `hitkit` command."""

from hitkit.cli.main import main

main()
