"""The numbers the checks hold a fit to, in a module without PyMC so the report and
the figures can quote them without importing the sampler."""

RHAT_MAX = 1.01  # rank-normalised R-hat
ESS_MIN = 400  # bulk and tail ESS
BFMI_MIN = 0.3  # energy BFMI per chain
PPC_ALPHA = 0.01  # two-sided posterior predictive p-value below which a group is flagged
