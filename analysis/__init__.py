"""The hierarchical Bayesian model of human alignment, its checks and study planning."""
