"""Ed25519 API keys, as Polymarket US issues them: the second signature scheme of the key store.

A key is an Ed25519 key pair. The client holds the secret, base64 (standard
alphabet) of the 32-byte seed or of the 64-byte ``seed || public key`` (the
venue hands out the 64-byte form; the official SDK takes either and signs with
the first 32 bytes). The server needs only the public key (base64, 32 bytes),
which ``ApiKey.public_key`` holds.

A signature is base64 of the 64-byte Ed25519 signature of the message the API
defines (for the venue's REST and WebSocket API: ``timestamp + METHOD + path``,
``pyexchange.api.rest.auth``). Verification is libsodium's (PyNaCl, which the
SDK itself signs with): about 60 us on this machine, half of what
``cryptography`` takes (BENCHMARKS.md, "HTTP stack").

Ed25519 is deterministic: the same key signing the same message gives the same
signature, so a scheme that signs no nonce cannot tell a replay from a second
identical request. The venue's SDK sends identical headers for two calls made
in the same millisecond; the API that uses this scheme decides what to do
about replays, not this module.

``VerifyThread`` runs the checks of an asyncio server on a thread of its own:
libsodium releases the GIL while it verifies (PyNaCl's calls are cffi's, which
release it), so the checks run beside the event loop instead of on it. The loop
pays ~3-7 us a check (a Future, a queue put, its share of one wake-up per batch of
answers) instead of the ~45-60 us of the check; ``run_in_executor`` would cost it
17-24 us (a ``concurrent.futures.Future`` wrapped, one wake-up per check). A check
the caller names (``same=``) that is still queued or running for an earlier caller
is not queued again: it gets that check's answer (a client sending the same signed
headers several times in one millisecond costs one verification, not one each).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from nacl.bindings import crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

NAME = "ed25519"
SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFormatError(ValueError):
    """A secret or public key that is not base64 of the right number of bytes."""


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyFormatError(f"{what} is not standard base64") from None


def seed_of(secret_b64: str) -> bytes:
    """The 32-byte seed of a secret given as base64 of the seed or of seed || public key."""
    raw = _b64decode(secret_b64, "the secret")
    if len(raw) == 2 * SEED_BYTES:
        raw = raw[:SEED_BYTES]
    if len(raw) != SEED_BYTES:
        raise KeyFormatError("the secret must be base64 of 32 bytes (seed) or 64 (seed || public)")
    return raw


def public_key_of(secret_b64: str) -> str:
    """The base64 public key of a secret."""
    public, _ = crypto_sign_seed_keypair(seed_of(secret_b64))
    return base64.b64encode(public).decode()


def generate() -> tuple[str, str]:
    """A new key pair: (public key, secret), both base64; the secret in the venue's 64-byte form."""
    signing = SigningKey.generate()
    public = bytes(signing.verify_key)
    return base64.b64encode(public).decode(), base64.b64encode(bytes(signing) + public).decode()


def sign(secret_b64: str, message: bytes) -> str:
    """Base64 signature of ``message`` (the client side; the SDK does the same)."""
    return base64.b64encode(SigningKey(seed_of(secret_b64)).sign(message).signature).decode()


class Verifier:
    """Checks signatures against one public key (decoded once, kept with the key)."""

    __slots__ = ("public",)

    def __init__(self, public_key_b64: str) -> None:
        public = _b64decode(public_key_b64, "the public key")
        if len(public) != PUBLIC_KEY_BYTES:
            raise KeyFormatError("an Ed25519 public key is 32 bytes")
        self.public = public

    def verify(self, message: bytes, signature_b64: str) -> bool:
        """True if ``signature_b64`` is base64 of a valid signature of ``message``."""
        if len(signature_b64) != 88:  # base64 of 64 bytes, padded: reject the rest unread
            return False
        try:
            signature = base64.b64decode(signature_b64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        try:
            crypto_sign_open(signature + message, self.public)
        except BadSignatureError:
            return False
        return True


Check = Callable[[bytes, str], bool]  # (message, base64 signature) -> verifies


class VerifyThread:
    """Signature checks for asyncio code, run on one thread (started at the first check).

    ``check(verify, message, signature_b64)`` returns a Future of ``verify(message,
    signature_b64)``, which runs on the thread (an exception it raises is the Future's).
    ``same``: a hashable naming what ``verify`` checks (the caller's key id, message and
    signature): while a check of that name is pending on this loop, another gets its
    answer without a check of its own (each caller still has its own Future, so one
    that goes away changes nothing for the others).
    The thread takes every check queued since its last batch (at most ``MAX_BATCH``:
    the first check of a batch waits for the whole batch) and answers each loop once
    per batch. ``close()`` stops the thread; a later check starts another.
    """

    MAX_BATCH = 16  # ~0.7-1 ms of checks: what the first of a batch may wait for the rest

    def __init__(self, name: str = "ed25519-verify") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # (loop, same) -> the Futures waiting for that pending check (the loops' threads
        # only: filled by ``check``, emptied by ``_settle``)
        self._pending: dict[tuple[Any, Any], list[asyncio.Future[bool]]] = {}

    def check(
        self, verify: Check, message: bytes, signature_b64: str, same: Any = None
    ) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if same is not None:
            name = (loop, same)
            waiting = self._pending.get(name)
            if waiting is not None:
                waiting.append(future)
                return future
            waiting = self._pending[name] = [future]
        else:
            name, waiting = None, [future]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put((loop, waiting, name, verify, message, signature_b64))
        return future

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(5.0)

    def _run(self) -> None:
        pending = self._queue
        while True:
            batch = [pending.get()]
            while len(batch) < self.MAX_BATCH and not pending.empty():
                batch.append(pending.get_nowait())
            answers: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] = {}
            for item in batch:
                if item is None:
                    continue
                loop, waiting, name, verify, message, signature = item
                try:
                    answer: tuple[Any, ...] = (waiting, name, verify(message, signature), None)
                except Exception as exc:
                    answer = (waiting, name, False, exc)
                answers.setdefault(loop, []).append(answer)
            for loop, results in answers.items():
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                    loop.call_soon_threadsafe(self._settle, results)
            if None in batch:
                return

    def _settle(self, results: list[tuple[Any, ...]]) -> None:
        """On the loop: every Future waiting for each answered check (the list is complete:
        a later ``check`` of the same name queues a check of its own)."""
        for waiting, name, verified, error in results:
            if name is not None:
                del self._pending[name]
            for future in waiting:
                if future.done():  # its caller went away
                    continue
                if error is None:
                    future.set_result(verified)
                else:
                    future.set_exception(error)
