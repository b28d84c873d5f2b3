"""`hitkit demo`: every stage of a study on the embedded demo, on a laptop CPU."""
