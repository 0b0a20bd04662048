"""Recording, replay and comparison for dora-py dataflows."""
