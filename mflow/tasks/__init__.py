"""Task types: one module per type, `base` for the interface, `registry` to find them."""
