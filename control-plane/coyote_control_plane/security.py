"""Roles and permissions, API keys, passwords and dashboard sessions.

API keys look like ``cyk_<prefix>_<secret>``: the prefix finds the key, the secret (256 random
bits) is kept only as its sha256. Passwords are hashed with scrypt from the standard library,
a memory-hard function made for passwords, so no extra dependency is needed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

from coyote_control_plane.models import Role


class Permission(enum.StrEnum):
    READ = "read"
    """See bots, deployments, accounts, limits and events of one's organisation."""
    TRADE = "trade"
    """Push bots, make releases, deploy, start, pause, resume, stop, roll back."""
    HALT = "halt"
    """Trip a kill switch: anyone who may trade may also stop trading."""
    RISK = "risk"
    """Set risk limits and capital, reset kill switches."""
    AUDIT = "audit"
    """Read the audit log."""
    ADMIN = "admin"
    """Users, API keys of others, accounts, webhooks."""


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.TRADER: frozenset({Permission.READ, Permission.TRADE, Permission.HALT}),
    Role.RISK: frozenset({Permission.READ, Permission.HALT, Permission.RISK, Permission.AUDIT}),
    Role.VIEWER: frozenset({Permission.READ}),
}


def may_grant(owner: Role, key_role: Role) -> bool:
    """A key may carry ``key_role`` only if that role can do nothing its owner cannot."""
    return GRANTS[key_role] <= GRANTS[owner]


# -- API KEYS ----------------------------------------------------------------------------------

KEY_SCHEME = "cyk"


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, prefix, secret_hash)``; only the prefix and hash are stored."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_SCHEME}_{prefix}_{secret}", prefix, hash_token(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(secret), stored_hash)


def new_session_token() -> tuple[str, str]:
    """``(token, token_hash)`` of a dashboard session."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


# -- PASSWORDS ---------------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


# Hashing a password nobody has, for logins of unknown users, keeps their answer as slow as a
# wrong password's: response times do not tell which emails exist.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_hex(16))
