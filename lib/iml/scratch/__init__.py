"""Set inclusion: a small word-level transformer trained from scratch, several seeds batched in one model."""
