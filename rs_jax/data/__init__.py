"""Data: synthetic scenes, TFDS builders, dataset sources, folder datasets, tokenizer, Grain
pipelines.

Submodules are imported explicitly (``from rs_jax.data import pipeline``), so that
importing this package stays cheap.
"""
