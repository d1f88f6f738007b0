"""The variational (Bayesian) digit network and everything that makes and judges it."""
