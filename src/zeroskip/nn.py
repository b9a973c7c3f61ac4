"""Drop-in modules (filled in next)."""
