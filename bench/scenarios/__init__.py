"""The bench's parts: each measures one thing and renders its own tables."""
