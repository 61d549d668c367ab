"""rs-jax: semantic-augmented multi-level remote-sensing vision-language models in JAX/Flax.

Importing the package does not import jax, so the CLI can configure devices first.
"""

__version__ = "0.1.0"
