"""The language-model experiment: the tagged CVDB-style dataset, tokenizer, models, two-stage training and
evaluation (the paper's main result)."""
