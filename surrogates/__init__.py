"""Differentiable device models learned from recorded queries (black-box, grey-box, residual)."""
