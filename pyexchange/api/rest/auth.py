"""The venue's request signatures, checked as Polymarket US checks them (spec §1.3, §1.4).

An authenticated request (REST, or a WebSocket upgrade) carries three headers:

- ``X-PM-Access-Key``: the key id;
- ``X-PM-Timestamp``: Unix time in milliseconds, within +-30 s of the server's clock;
- ``X-PM-Signature``: base64 of the Ed25519 signature of
  ``timestamp + METHOD + path`` (plain concatenation; the path without the query
  string, as the client wrote it; a WebSocket upgrade signs ``GET``).

Checked in that order, each failure a 401 with a message saying which; then the
key's permission (403), then its token bucket (429). There is **no** replay
refusal: Ed25519 is deterministic and the SDK sends identical headers for two
identical calls made in the same millisecond (spec §1.4), so within the window a
repeated signature is a legitimate second call. What makes a replay harmless is
what the venue itself relies on: every order gets a new id, and a captured
signature is good for 30 seconds on one path only.

A browser cannot set headers on a WebSocket upgrade, so an upgrade that carries
none of the three headers may carry them as query parameters of the same names
(``?X-PM-Access-Key=...&X-PM-Timestamp=...&X-PM-Signature=...``, the signature
URL-encoded); they are checked exactly as the headers are, over the path without
the query (``upgrade_credentials``; the web view uses it, docs/webview.md).

Signatures are verified off the event loop's thread (``ed25519.VerifyThread``:
libsodium releases the GIL), so the loop goes on parsing and answering other requests
meanwhile; the checks before and after the signature run on the loop, in the same
order as they are listed above.

Verified signatures are remembered (``VERIFIED_KEPT`` of them, the oldest forgotten
first): a verification costs ~60 us of CPU, and a busy client sends the same headers
for every call of one path in one millisecond (the SDK's timestamps are milliseconds),
so the second and later cost a dict look-up; one that arrives while the first is still
being verified waits for that verification (``VerifyThread.check(..., same=)``) instead
of queuing another. It is a memo of a pure function, checked after the key and the
window: it changes no answer.

Keys come from the server's key store (``DATA_DIR/keys.json``); a key made by
``pyexchange keys create`` while the server runs is picked up on its first use
(the file is re-read when an unknown key id arrives and the file has changed).
Each key acts for exactly one account, as the venue's do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

from ...service.auth import ED25519, ApiKey, KeyStore, RateLimiter
from ...service.ed25519 import VerifyThread
from .errors import ApiError, forbidden, rate_limited, unauthenticated

KEY_HEADER = "x-pm-access-key"
TIMESTAMP_HEADER = "x-pm-timestamp"
SIGNATURE_HEADER = "x-pm-signature"
WINDOW_MS = 30_000
VERIFIED_KEPT = 8192  # (key id, signed message, signature) triples known to verify


_CREDENTIALS = (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def upgrade_credentials(headers: dict[str, str], query_string: bytes) -> dict[str, str]:
    """The headers of a WebSocket upgrade, with the three credentials taken from the query
    when none of them is a header (a browser's upgrade)."""
    if not query_string or any(name in headers for name in _CREDENTIALS):
        return headers
    found = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), max_num_fields=16):
        lowered = name.lower()
        if lowered in _CREDENTIALS:
            found[lowered] = value
    return {**headers, **found} if found else headers


class VenueAuth:
    def __init__(
        self,
        keys: KeyStore,
        rate_limiter: RateLimiter,
        *,
        keys_path: Path | None = None,
        window_ms: int = WINDOW_MS,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_refused: Callable[[str], None] | None = None,
        checks: VerifyThread | None = None,
    ) -> None:
        self.keys = keys
        self.rate_limiter = rate_limiter
        self.keys_path = keys_path
        self.window_ms = window_ms
        self.clock_ms = clock_ms
        self.on_refused = on_refused
        self.checks = checks if checks is not None else VerifyThread()
        self._keys_stamp = self._stamp()
        self._verified: dict[tuple[str, str, str], None] = {}

    def _stamp(self) -> tuple[int, int]:
        try:
            stat = self.keys_path.stat() if self.keys_path is not None else None
        except OSError:
            return (0, 0)
        return (0, 0) if stat is None else (stat.st_mtime_ns, stat.st_size)

    def _reload(self) -> None:
        """Take in keys added to the keys file since it was read (re-read only when the
        file changed: a flood of unknown key ids costs one ``stat`` each)."""
        stamp = self._stamp()
        if self.keys_path is None or stamp == self._keys_stamp:
            return
        self._keys_stamp = stamp
        try:
            fresh = KeyStore.load(self.keys_path)
        except (OSError, ValueError, KeyError):
            return
        for key in fresh:
            if self.keys.get(key.key_id) is None:
                self.keys.add(key)

    def close(self) -> None:
        self.checks.close()

    async def authenticate(
        self, headers: dict[str, str], method: str, path: str, permission: str
    ) -> ApiKey:
        """The key that signed this request, or ``ApiError`` (401, 403, 429)."""
        try:
            return await self._authenticate(headers, method, path, permission)
        except ApiError as exc:
            if self.on_refused is not None:
                self.on_refused(str(exc.status))
            raise

    async def _authenticate(
        self, headers: dict[str, str], method: str, path: str, permission: str
    ) -> ApiKey:
        key_id = headers.get(KEY_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER)
        given = headers.get(SIGNATURE_HEADER)
        if not key_id or stamp is None or given is None:
            missing = [
                name
                for name, value in (
                    ("X-PM-Access-Key", key_id),
                    ("X-PM-Timestamp", stamp),
                    ("X-PM-Signature", given),
                )
                if not value
            ]
            raise unauthenticated(f"missing {', '.join(missing)} header")
        key = self.keys.get(key_id)
        if key is None:
            self._reload()
            key = self.keys.get(key_id)
        if key is None or key.scheme != ED25519:
            raise unauthenticated("unknown API key")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 16:
            raise unauthenticated("X-PM-Timestamp must be Unix time in milliseconds")
        offset = int(stamp) - self.clock_ms()
        if abs(offset) > self.window_ms:
            raise unauthenticated(
                f"timestamp is {offset / 1000:+.1f} s from the server's clock "
                f"(allowed +-{self.window_ms // 1000} s)"
            )
        message = f"{stamp}{method}{path}"
        seen = (key_id, message, given)
        if seen not in self._verified:
            if not await self.checks.check(key.verify_signature, message.encode(), given, seen):
                raise unauthenticated(
                    "invalid signature (Ed25519 over timestamp + method + path, base64)"
                )
            verified = self._verified
            if seen not in verified:  # (a request with the same headers may have been first)
                if len(verified) >= VERIFIED_KEPT:
                    del verified[next(iter(verified))]  # the oldest (dicts keep insertion order)
                verified[seen] = None
        if not key.may(permission):
            raise forbidden(f"this API key lacks the {permission!r} permission")
        if len(key.accounts) != 1:
            raise forbidden("this API key is not bound to one account")
        wait = self.rate_limiter.try_acquire(key)
        if wait:
            raise rate_limited()
        return key


def account_of(key: ApiKey) -> int:
    """The one account a venue key acts for."""
    return next(iter(key.accounts))
