"""Feeds built from the engine's events: market data (L2 books, trades, BBO) and drop copy.

Publishers take each batch on the sequencer thread in O(1) and do their work
elsewhere (docs/publishers.md); every API serializes what they hand out.
"""
