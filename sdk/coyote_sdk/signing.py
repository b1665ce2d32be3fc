"""Bundle signatures: an organisation's Ed25519 keys vouch for the bundles it runs.

Signing is optional. Once an organisation registers a public key with the control plane
(``POST /v1/signing-keys``), every push must carry a signature of the bundle's digest by one of
its keys, and the bot runtime checks it again, against the keys the supervisor hands it, before
it loads the bundle. A stolen API key then cannot run code the key holder did not sign.

Texts, so they travel in headers, files and command lines::

    public key   ed25519:<base64 of the 32 raw bytes>
    signature    ed25519:<key id>:<base64 of the 64-byte signature of the digest's ASCII text>

The key id (16 hex digits of the public key's SHA-256) names which key signed. Private keys
are PEM files (PKCS#8) that never leave the author's machine: ``coyote-sdk keys new``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SignatureError",
    "key_id",
    "new_private_key",
    "public_key_of",
    "sign_digest",
    "verify_signature",
]

_PREFIX = "ed25519:"


class SignatureError(ValueError):
    """A key or signature that is malformed, or a signature that does not verify."""


def new_private_key() -> bytes:
    """A new private key, as an unencrypted PKCS#8 PEM (keep the file to its owner)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _private(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("the private key is not an Ed25519 key")
    return key


def public_key_of(private_pem: bytes) -> str:
    """The public key text of a private key."""
    raw = (
        _private(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return _PREFIX + base64.b64encode(raw).decode()


def _public(text: str) -> Ed25519PublicKey:
    if not text.startswith(_PREFIX):
        raise SignatureError(f"a public key starts with {_PREFIX!r}, got {text[:20]!r}")
    try:
        raw = base64.b64decode(text.removeprefix(_PREFIX), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"not an Ed25519 public key: {text[:60]!r}") from exc


def key_id(public_key: str) -> str:
    """The id of a public key: 16 hex digits of its SHA-256.

    Raises:
        SignatureError: Not a public key text.
    """
    _public(public_key)
    return hashlib.sha256(public_key.encode()).hexdigest()[:16]


def sign_digest(private_pem: bytes, digest: str) -> str:
    """Signs a bundle's digest (``sha256:<hex>``) with a private key."""
    key = _private(private_pem)
    signature = key.sign(digest.encode("ascii"))
    return f"{_PREFIX}{key_id(public_key_of(private_pem))}:{base64.b64encode(signature).decode()}"


def verify_signature(digest: str, signature: str, public_keys: Iterable[str]) -> str:
    """Checks that ``signature`` signs ``digest`` by one of ``public_keys``; returns its id.

    Raises:
        SignatureError: The signature is malformed, names none of the keys, or is wrong.
    """
    parts = signature.split(":")
    if len(parts) != 3 or f"{parts[0]}:" != _PREFIX:
        raise SignatureError("a signature reads ed25519:<key id>:<base64>")
    _, signer, encoded = parts
    keys = {key_id(k): k for k in public_keys}
    if signer not in keys:
        raise SignatureError(f"signed by key {signer}, which is not among the trusted keys")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise SignatureError("the signature is not base64") from exc
    try:
        _public(keys[signer]).verify(raw, digest.encode("ascii"))
    except InvalidSignature as exc:
        raise SignatureError(f"the signature by key {signer} does not match {digest}") from exc
    return signer
