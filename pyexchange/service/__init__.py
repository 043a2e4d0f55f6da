"""The service layer every API adapts, with no transport (docs/service.md).

- ``link``: ``EngineLink``, the way into the engine (backpressure, one answer per batch);
- ``orders``, ``queries``, ``admin``: order entry, reads, administration; requests and
  replies are plain msgspec Structs in the core's units;
- ``errors``: typed refusals (a category, a reason code, a short message) that each
  API maps to its own statuses;
- ``auth`` (keys, signatures, permissions, rate limits), ``ed25519``, ``catalogue``;
- ``pipeline``: pipelined streams that answer every request, with flow control;
- ``markets``, ``messages``: what conversion and replies need.
"""
