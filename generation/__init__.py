"""IRI generation: images a network represents like a target, made on GPU or CPU."""
