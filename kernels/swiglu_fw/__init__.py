"""SwiGLU fast-weight network: apply and closed-form update directions (README.md, sections 1-2)."""
