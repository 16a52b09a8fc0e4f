"""Elementwise chains around the fast weights: RMSNorm, q/k/v prep, gated output, lr/momentum (README.md, section 6)."""
