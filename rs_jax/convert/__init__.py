"""Import/export of Hugging Face checkpoints into our NNX modules."""
