"""Exceptions raised at the Python edge of matchcore."""


class InvariantError(AssertionError):
    """``validate()`` found a broken invariant; the message names it precisely."""
