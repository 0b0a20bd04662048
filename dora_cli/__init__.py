"""The ``dora`` command line."""
