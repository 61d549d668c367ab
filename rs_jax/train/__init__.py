"""Training infrastructure: experiment setup, the train loop, optimizer, checkpoints, progress.

Submodules are imported explicitly (``from rs_jax.train import trainer``) so that
importing this package stays cheap and does not initialise jax.
"""
