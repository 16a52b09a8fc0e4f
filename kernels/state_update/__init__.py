"""Momentum, Muon and row re-normalisation of one update step (README.md, sections 3-5)."""
