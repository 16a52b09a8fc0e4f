"""Muon's quintic Newton-Schulz orthogonalisation (README.md, section 4)."""
