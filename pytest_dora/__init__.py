"""dora-py pytest plugin (filled in by issue 6)."""
