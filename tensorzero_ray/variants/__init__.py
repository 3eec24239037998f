"""One module per variant type."""
