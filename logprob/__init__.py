"""scalelens scorer: per-token log-probabilities of every choice of every item, for a ladder of causal LMs."""

__version__ = "0.1.0"
