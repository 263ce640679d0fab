"""The MNIST grid analogue of the paper (its Fig. 7) and the studies run on it: batch size, alpha, gradient
alignment and probes."""
