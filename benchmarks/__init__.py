"""Reproducible performance harnesses of the operator (see README.md); results in results/."""
