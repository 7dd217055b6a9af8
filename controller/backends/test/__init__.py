"""The in-memory `test` driver: deterministic hosts and a migration model for demos and tests.

Nothing is imported here: the model imports this package's declaration, which must stay light.
"""
