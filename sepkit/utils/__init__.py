"""Small helpers shared by several packages (atomic file output, logging)."""
