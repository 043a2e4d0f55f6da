"""API keys, request signatures, permissions and per-key rate limits (docs/service.md).

A request carries three metadata entries:

- ``x-api-key``: the key id;
- ``x-timestamp-ms``: Unix time in milliseconds, within ``skew_ms`` of the server's clock;
- ``x-signature``: hex HMAC-SHA256 keyed with the secret's UTF-8 bytes over
  ``f"{key_id}\\n{timestamp_ms}\\n{full_method}\\n{sha256_hex(body)}"``, where ``body`` is
  the request message exactly as the client sent it (the bytes received: any
  field order, explicit defaults, packed or not) and ``b""`` for a client stream
  (authenticated once, when it opens). docs/service.md has the recipe.

The server refuses a signature it has already accepted within the skew
window (a replay), a key without the permission the call needs (``trade``,
``read``, ``admin``), an account the key is not bound to, and a key that has
spent its token bucket. Admin keys are separate credentials; an admin key with
no accounts may see every account (``read``), never trade for them unless it
also holds ``trade`` and the account.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import Forbidden, RateLimited, Unauthenticated

TRADE = "trade"
READ = "read"
ADMIN = "admin"
PERMISSIONS = frozenset({TRADE, READ, ADMIN})

HMAC = "hmac"  # the gRPC API's signatures (below)
ED25519 = "ed25519"  # the venue API's (pyexchange.service.ed25519)
SCHEMES = frozenset({HMAC, ED25519})

KEY_HEADER = "x-api-key"
TIMESTAMP_HEADER = "x-timestamp-ms"
SIGNATURE_HEADER = "x-signature"

DEFAULT_SKEW_MS = 5_000
DEFAULT_RATE = 1_000.0  # requests per second
DEFAULT_BURST = 2_000


class Serializable(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


# ------------------------------------------------------------------ keys


@dataclass(frozen=True)
class ApiKey:
    """One credential: what it may do (``permissions``) and for whom (``accounts``).

    ``rate`` (requests per second) and ``burst`` size its token bucket.
    ``scheme`` is how its requests are signed: ``hmac`` (the gRPC API: ``secret``
    is the shared secret) or ``ed25519`` (the venue's REST/WebSocket API,
    ``pyexchange.service.ed25519``: ``public_key`` verifies; ``secret`` is kept
    only for keys the server made for local use, such as the demo's).
    """

    key_id: str
    secret: str
    permissions: frozenset[str]
    accounts: frozenset[int] = frozenset()
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    name: str = ""
    scheme: str = HMAC
    public_key: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "permissions", frozenset(self.permissions))
        object.__setattr__(self, "accounts", frozenset(int(a) for a in self.accounts))
        unknown = self.permissions - PERMISSIONS
        if unknown:
            raise ValueError(f"key {self.key_id}: unknown permissions {sorted(unknown)}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"key {self.key_id}: unknown scheme {self.scheme!r}")
        if not self.key_id or not (self.secret or self.public_key):
            raise ValueError("a key needs a key_id and a secret (HMAC) or a public key (Ed25519)")
        if self.scheme == ED25519:
            from .ed25519 import Verifier  # checks the key's format now, not at the first call

            object.__setattr__(self, "_verifier", Verifier(self.public_key))
        elif not self.secret:
            raise ValueError(f"key {self.key_id}: an HMAC key needs its secret")
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"key {self.key_id}: rate must be > 0 and burst >= 1")

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_all_accounts(self) -> bool:
        """An admin key bound to no account may see every account."""
        return ADMIN in self.permissions and not self.accounts

    def may_use(self, account: int) -> bool:
        return account in self.accounts or self.sees_all_accounts()

    def verify_signature(self, message: bytes, signature_b64: str) -> bool:
        """Ed25519 keys: whether ``signature_b64`` signs ``message`` (False for HMAC keys)."""
        verifier = getattr(self, "_verifier", None)
        return verifier is not None and verifier.verify(message, signature_b64)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key_id": self.key_id,
            "secret": self.secret,
            "permissions": sorted(self.permissions),
            "accounts": sorted(self.accounts),
            "rate": self.rate,
            "burst": self.burst,
            "name": self.name,
        }
        if self.scheme != HMAC:
            data["scheme"] = self.scheme
            data["public_key"] = self.public_key
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKey:
        return cls(
            key_id=str(data["key_id"]),
            secret=str(data["secret"]),
            permissions=frozenset(data.get("permissions", ())),
            accounts=frozenset(int(a) for a in data.get("accounts", ())),
            rate=float(data.get("rate", DEFAULT_RATE)),
            burst=int(data.get("burst", DEFAULT_BURST)),
            name=str(data.get("name", "")),
            scheme=str(data.get("scheme", HMAC)),
            public_key=str(data.get("public_key", "")),
        )


def new_secret() -> str:
    return secrets.token_hex(32)


VENUE_RATE = 20.0  # the venue's limit per key: 20 requests/s, a bucket of 20
VENUE_BURST = 20


def venue_key(
    account: int,
    rate: float = VENUE_RATE,
    burst: int = VENUE_BURST,
    *,
    name: str | None = None,
    permissions: frozenset[str] = frozenset({TRADE, READ}),
    keep_secret: bool = True,
) -> ApiKey:
    """A new Ed25519 key for ``account`` on the Polymarket US API (key id: a UUID, as the
    venue's). The secret is kept in the key only with ``keep_secret`` (demo keys)."""
    from .ed25519 import generate

    public, secret = generate()
    return ApiKey(
        str(uuid.uuid4()),
        secret if keep_secret else "",
        permissions,
        frozenset({account}),
        rate,
        burst,
        name=f"pm-trader-{account}" if name is None else name,
        scheme=ED25519,
        public_key=public,
    )


class KeyStore:
    """The server's API keys, by key id; saved as JSON (``{"keys": [...]}``)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: dict[str, ApiKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: ApiKey) -> None:
        if key.key_id in self._keys:
            raise ValueError(f"duplicate key id {key.key_id}")
        self._keys[key.key_id] = key

    def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def by_name(self, name: str) -> ApiKey:
        for key in self._keys.values():
            if key.name == name:
                return key
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"keys": [key.to_json() for key in self._keys.values()]}

    def save(self, path: Path | str) -> None:
        """Write atomically, readable by the owner only (the file holds secrets)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path | str) -> KeyStore:
        data = json.loads(Path(path).read_text())
        return cls(ApiKey.from_json(entry) for entry in data["keys"])

    @classmethod
    def demo(
        cls,
        accounts: Sequence[int] = (1, 2, 3, 4),
        *,
        rate: float = 10_000.0,
        burst: int = 20_000,
        venue_rate: float = VENUE_RATE,
        venue_burst: int = VENUE_BURST,
    ) -> KeyStore:
        """Fresh demo credentials: a trader key per account (HMAC, for gRPC) and an Ed25519
        key per account (``pm-trader-N``, for the Polymarket US API), a read-only key, an
        admin key."""
        keys = [
            ApiKey(
                f"trader-{account}-{secrets.token_hex(4)}",
                new_secret(),
                frozenset({TRADE, READ}),
                frozenset({account}),
                rate,
                burst,
                name=f"trader-{account}",
            )
            for account in accounts
        ]
        keys.extend(venue_key(account, venue_rate, venue_burst) for account in accounts)
        keys.append(
            ApiKey(
                f"viewer-{secrets.token_hex(4)}",
                new_secret(),
                frozenset({READ}),
                frozenset(accounts),
                rate,
                burst,
                name="viewer",
            )
        )
        keys.append(
            ApiKey(
                f"admin-{secrets.token_hex(4)}",
                new_secret(),
                frozenset({ADMIN, READ}),
                frozenset(),
                1_000.0,
                1_000,
                name="admin",
            )
        )
        return cls(keys)


# ------------------------------------------------------------- signatures


def body_of(request: bytes | Serializable | None) -> bytes:
    """What a client signs: the bytes it sends (a message: as a gRPC stub serializes it;
    ``None``: a client stream, the empty body)."""
    if request is None:
        return b""
    if isinstance(request, bytes):
        return request
    return request.SerializeToString()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signature(key_id: str, secret: str, timestamp_ms: int, method: str, body: bytes) -> str:
    return signature_of_hash(key_id, secret, timestamp_ms, method, body_hash(body))


def signature_of_hash(
    key_id: str, secret: str, timestamp_ms: int, method: str, body_sha256: str
) -> str:
    # The key id is signed too: a request cannot be replayed under another key.
    payload = f"{key_id}\n{timestamp_ms}\n{method}\n{body_sha256}".encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign(
    key_id: str,
    secret: str,
    method: str,
    request: bytes | Serializable | None,
    *,
    timestamp_ms: int | None = None,
) -> tuple[tuple[str, str], ...]:
    """The metadata that authenticates one call: ``request`` is the bytes sent, or the
    message (serialized as the stub sends it), or ``None`` for a client stream."""
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    body = body_of(request)
    return (
        (KEY_HEADER, key_id),
        (TIMESTAMP_HEADER, str(timestamp_ms)),
        (SIGNATURE_HEADER, signature(key_id, secret, timestamp_ms, method, body)),
    )


# ------------------------------------------------------------ rate limits


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    Used from the asyncio loop only (no lock).
    """

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def try_acquire(self, key: ApiKey, cost: float = 1.0) -> float:
        """0.0 if the key may go on (the tokens are spent), else seconds until it may."""
        now = self.clock()
        bucket = self._buckets.get(key.key_id)
        if bucket is None:
            bucket = self._buckets[key.key_id] = _Bucket(float(key.burst), now)
        else:
            bucket.tokens = min(float(key.burst), bucket.tokens + (now - bucket.updated) * key.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / key.rate

    def message(self, key: ApiKey, wait_s: float) -> str:
        return (
            f"rate limit: key {key.key_id} allows {key.rate:g} requests/s "
            f"(burst {key.burst}); retry in {max(wait_s * 1000, 1):.0f} ms"
        )


# --------------------------------------------------------- the server side


def check_account(key: ApiKey, account: object) -> None:
    """``Forbidden`` unless the key may act on / see ``account``."""
    if type(account) is not int or not key.may_use(account):
        raise Forbidden(
            f"key {key.key_id} may not act on or see account {account}", "ACCOUNT_NOT_ALLOWED"
        )


class Authenticator:
    """Checks the signed metadata of a request (``verify``), the key's accounts
    (``check_account``) and its token bucket (``try_acquire``); each refusal is a
    ``ServiceError`` (``Unauthenticated``, ``Forbidden``, ``RateLimited``) that the
    API maps to its status (gRPC: ``pyexchange.api.grpc.auth``).
    """

    def __init__(
        self,
        keys: KeyStore,
        skew_ms: int = DEFAULT_SKEW_MS,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        rate_limiter: RateLimiter | None = None,
        not_before_ms: int = 0,
    ) -> None:
        self.keys = keys
        # Signatures are remembered in memory only: after a restart, a request
        # signed before the server started could be replayed. Such requests are
        # refused (the server sets this to its start time); clients sign again.
        self.not_before_ms = not_before_ms
        self.skew_ms = skew_ms
        self.clock = clock
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self._seen: dict[str, int] = {}  # signature -> when it stops mattering (ms)
        self._expiry: deque[tuple[int, str]] = deque()

    # The checks, in order: key, timestamp, signature, replay, rate, permission.
    def verify(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        method: str,
        body: bytes | None,
        permission: str | None,
        *,
        cost: float = 1.0,
    ) -> ApiKey:
        """The key of a signed request, or a ``ServiceError`` saying why not. ``body``: the
        request's bytes as received (never a re-serialization); ``None`` or ``b""`` for a
        client stream."""
        values: dict[str, str] = {}
        for name, value in metadata or ():
            if name in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
                values[name] = value.decode() if isinstance(value, bytes) else value
        key_id = values.get(KEY_HEADER)
        if not key_id:
            raise Unauthenticated(f"missing {KEY_HEADER} metadata", "MISSING_API_KEY")
        key = self.keys.get(key_id)
        if key is None:
            raise Unauthenticated("unknown API key", "UNKNOWN_API_KEY")
        if key.scheme != HMAC:
            raise Unauthenticated(
                f"key {key.key_id} is an {key.scheme} key of the Polymarket US API (REST and "
                "WebSocket); gRPC calls are signed with an HMAC key",
                "WRONG_KEY_SCHEME",
            )
        stamp = values.get(TIMESTAMP_HEADER, "")
        if not stamp.isdigit() or len(stamp) > 19:
            raise Unauthenticated(
                f"missing or malformed {TIMESTAMP_HEADER} (Unix time in milliseconds)",
                "BAD_TIMESTAMP",
            )
        timestamp_ms = int(stamp)
        now = self.clock()
        if abs(now - timestamp_ms) > self.skew_ms:
            raise Unauthenticated(
                f"stale timestamp: {timestamp_ms - now:+d} ms from the server's clock "
                f"(allowed ±{self.skew_ms} ms)",
                "STALE_TIMESTAMP",
            )
        if timestamp_ms < self.not_before_ms:
            raise Unauthenticated(
                "request signed before the server started (a possible replay): sign it again",
                "SIGNED_BEFORE_START",
            )
        given = values.get(SIGNATURE_HEADER, "")
        if not given:
            raise Unauthenticated(f"missing {SIGNATURE_HEADER} metadata", "MISSING_SIGNATURE")
        expected = signature(key.key_id, key.secret, timestamp_ms, method, body or b"")
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise Unauthenticated(
                "signature does not match (HMAC-SHA256 over key id, timestamp, method and body)",
                "BAD_SIGNATURE",
            )
        self._forget(now)
        seen = f"{key.key_id}:{expected}"  # per key: equal secrets never collide
        if seen in self._seen:
            raise Unauthenticated(
                "replayed request: this signature was already used", "REPLAYED_REQUEST"
            )
        until = timestamp_ms + self.skew_ms
        self._seen[seen] = until
        self._expiry.append((until, seen))
        self.try_acquire(key, cost)
        if permission is not None and not key.may(permission):
            raise Forbidden(
                f"key {key.key_id} lacks the {permission!r} permission", "MISSING_PERMISSION"
            )
        return key

    def _forget(self, now: int) -> None:
        """Drop signatures whose timestamp is out of the window: they are refused as stale."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            until, sig = expiry.popleft()
            if self._seen.get(sig) == until:
                del self._seen[sig]

    def check_account(self, key: ApiKey, account: int) -> None:
        """``Forbidden`` unless the key may act on / see ``account``."""
        check_account(key, account)

    def try_acquire(self, key: ApiKey, cost: float = 1.0) -> None:
        """Charge ``cost`` tokens (each message of a stream too); ``RateLimited`` if spent."""
        wait = self.rate_limiter.try_acquire(key, cost)
        if wait:
            raise RateLimited(self.rate_limiter.message(key, wait), retry_after_s=wait)

    def try_acquire_all(self, key: ApiKey, count: int) -> bool:
        """Charge ``count`` requests at once if the bucket holds their tokens (True), else
        charge nothing: the caller then charges them one by one and refuses the rest."""
        return self.rate_limiter.try_acquire(key, count) == 0.0
