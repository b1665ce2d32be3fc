"""An authenticated Vault client, by token or by Kubernetes service account.

:func:`vault_client` is the one place a Coyote process gets its :class:`hvac.Client`. With
``COYOTE_VAULT_AUTH=token`` (the default) it carries ``COYOTE_VAULT_TOKEN`` (or the local dev
server's root token). With ``COYOTE_VAULT_AUTH=kubernetes`` it logs in through Vault's
Kubernetes auth method: it presents the pod's service-account token (a JWT, read from
``COYOTE_VAULT_KUBERNETES_TOKEN_PATH``) for the role ``COYOTE_VAULT_KUBERNETES_ROLE``, and Vault
answers a token of its own after checking the JWT with the cluster's TokenReview API. No Vault
token is ever stored in a Secret or an environment variable then.

The login is lazy (the first request makes it), so a process serving no real broker never
talks to Vault, and a Vault that is down at start is waited out by the caller's own retries.
The token Vault answers expires, and a long-running executor outlives it: the client logs in
again when two thirds of the token's lifetime have passed, and once more when Vault refuses a
request (403), in case the token was revoked early.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import hvac
import hvac.adapters
import hvac.exceptions

from coyote_sdk.config import StackSettings

__all__ = ["VaultLoginError", "vault_client"]

log = logging.getLogger("coyote.vault")

_RENEW_FRACTION = 2 / 3  # log in again after this much of the token's lifetime


class VaultLoginError(RuntimeError):
    """The Kubernetes login was refused, or the service-account token could not be read.

    The message names the role, the mount and the token file, never a token.
    """


def vault_client(settings: StackSettings | None = None, *, timeout: float = 30) -> hvac.Client:
    """An hvac client for the stack's Vault, authenticated as ``settings`` say.

    Args:
        settings: Where Vault is and how to log in; from the environment by default.
        timeout: Seconds each request to Vault may take.

    Returns:
        A client with a static token (``vault_auth="token"``), or one that logs in with the
        pod's service-account token on its first request and again before Vault's token
        expires (``vault_auth="kubernetes"``).

    Example:
        >>> client = vault_client()  # COYOTE_VAULT_ADDR, COYOTE_VAULT_AUTH ... from the env
        >>> client.secrets.kv.v2.read_secret_version(path="coyote/accounts/alpaca-paper")
    """
    settings = settings or StackSettings()
    endpoints = settings.endpoints()
    if settings.vault_auth == "token":
        return hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token, timeout=timeout)
    assert settings.vault_kubernetes_role  # the settings' validator requires it
    return hvac.Client(
        url=endpoints.vault_addr,
        # Not None: hvac would otherwise pick up VAULT_TOKEN or ~/.vault-token.
        token="",
        timeout=timeout,
        adapter=_KubernetesLogin,
        role=settings.vault_kubernetes_role,
        mount_point=settings.vault_kubernetes_mount,
        jwt_path=settings.vault_kubernetes_token_path,
    )


class _KubernetesLogin(hvac.adapters.JSONAdapter):
    """hvac's JSON adapter, logging in with a Kubernetes service-account token before the first
    request, when the Vault token is about to expire, and once after a 403."""

    def __init__(
        self, *args: Any, role: str, mount_point: str, jwt_path: str | Path, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._role = role
        self._mount = mount_point.strip("/")
        self._jwt_path = Path(jwt_path)
        self._login_url = f"/v1/auth/{self._mount}/login"
        self._renew_at: float | None = None  # monotonic; None: not logged in
        # VaultCredentials call the client from worker threads: one login at a time.
        self._lock = threading.RLock()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.rstrip("/").endswith(self._login_url):
            return super().request(method, url, *args, **kwargs)
        self._ensure_login()
        try:
            return super().request(method, url, *args, **kwargs)
        except hvac.exceptions.Forbidden:
            # A token revoked or expired before its time: log in once more and retry. A real
            # lack of permission is refused again and raised.
            self._login()
            return super().request(method, url, *args, **kwargs)

    def _ensure_login(self) -> None:
        with self._lock:
            if self._renew_at is None or time.monotonic() >= self._renew_at:
                self._login()

    def _login(self) -> None:
        with self._lock:
            where = f"role {self._role!r} at auth/{self._mount}"
            try:
                jwt = self._jwt_path.read_text().strip()
            except OSError as exc:
                raise VaultLoginError(
                    f"cannot read the service-account token {self._jwt_path} to log in to "
                    f"Vault as {where}: {exc.strerror or exc}"
                ) from exc
            try:
                answer = super().login(self._login_url, json={"role": self._role, "jwt": jwt})
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest) as exc:
                # Vault's message names what it refused (role, namespace, audience); it holds
                # no secret.
                errors = "; ".join(str(e) for e in (exc.errors or [])) or type(exc).__name__
                raise VaultLoginError(
                    f"Vault refused the Kubernetes login as {where}: {errors}"
                ) from exc
            lease = int((answer.get("auth") or {}).get("lease_duration") or 0)
            # A lease of 0 never expires (a root-like token); otherwise renew well before.
            self._renew_at = (
                float("inf") if lease <= 0 else time.monotonic() + lease * _RENEW_FRACTION
            )
            log.info("logged in to Vault as %s (token lease %d s)", where, lease)
