"""Training infrastructure: mesh and sharding, optimizer, checkpoints, progress and metrics.

Submodules are imported explicitly (``from rs_jax.train import partitioning``) so that
importing this package stays cheap and does not initialise jax.
"""
