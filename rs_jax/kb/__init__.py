"""Remote-sensing knowledge base: schema, validation, taxonomy build, index and CLI."""
