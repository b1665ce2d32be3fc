"""A client of the control plane's HTTP API: push bots, deploy them, start, stop and watch them.

This is what the ``coyote-sdk`` platform commands (``login``, ``push``, ``deploy``, ``status``,
``logs``...) are built on; scripts can use it directly::

    from coyote_sdk.client import ControlPlaneClient

    with ControlPlaneClient.from_config() as api:      # the saved login, or COYOTE_API_*
        version, created = api.push("bots/sma_cross.py", name="sma")
        api.deploy("sma-paper", bot="sma", account="paper", params={"fast": 10}, start=True)
        print(api.deployment("sma-paper")["status"])

Every method answers plain JSON data (dicts and lists) as the API defines it, and raises
:class:`ApiError` for any error the API answers (its ``code`` is stable: ``bot.not_found``,
``auth.forbidden``...) or when the control plane cannot be reached.

The saved login is ``$COYOTE_CONFIG_DIR/credentials.json`` (default ``~/.config/coyote/``),
readable by its owner only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx

from coyote_sdk._version import __version__

if TYPE_CHECKING:
    from coyote_sdk.bundles import Bundle

CREDENTIALS_FILE: Final = "credentials.json"
ACTIONS: Final = ("start", "pause", "resume", "stop")
"""The actions of :meth:`ControlPlaneClient.action`: each sets the deployment's desired state."""


class ApiError(Exception):
    """An error the control plane answered, or the failure to reach it.

    Attributes:
        status: The HTTP status; 0 when no answer came (``connection.failed``).
        code: Stable and machine-readable, e.g. ``deployment.not_found``, ``auth.forbidden``.
        message: For people.
        field: The request field at fault, for invalid requests.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r}, {self.field!r})"


class NotLoggedInError(Exception):
    """No control plane to talk to: no saved login and no ``COYOTE_API_URL``/``COYOTE_API_KEY``,
    or a saved login that cannot be read."""


# -- THE SAVED LOGIN -------------------------------------------------------------------------


def config_dir() -> Path:
    """Where the CLI keeps its configuration: ``$COYOTE_CONFIG_DIR``, else ``~/.config/coyote``."""
    configured = os.environ.get("COYOTE_CONFIG_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "coyote"


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def save_credentials(url: str, api_key: str) -> Path:
    """Saves the login, readable and writable by its owner only (mode 0600).

    The file is written beside its final name and renamed into place, so a reader never sees
    half of it and the key never sits in a file with looser permissions.

    Returns:
        The file's path.
    """
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # The umask may only have removed bits; fchmod makes the mode exactly 0600 regardless.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"url": url, "api_key": api_key}, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def load_credentials() -> dict[str, str] | None:
    """The saved login (``url``, ``api_key``), or None when there is none.

    Raises:
        NotLoggedInError: The file exists but is not a login the CLI wrote.
    """
    path = credentials_path()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise NotLoggedInError(f"cannot read {path}: {exc}; run `coyote-sdk login` again") from exc
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("url"), str)
        and isinstance(saved.get("api_key"), str)
    ):
        raise NotLoggedInError(f"{path} is not a saved login; run `coyote-sdk login` again")
    return {"url": saved["url"], "api_key": saved["api_key"]}


def forget_credentials() -> bool:
    """Removes the saved login; True if there was one."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


# -- THE CLIENT ------------------------------------------------------------------------------


class ControlPlaneClient:
    """The control plane's API over HTTP, authenticated with an API key.

    Use it as a context manager, or call :meth:`close`, to release its connections.

    Args:
        url: The control plane's base address, e.g. ``https://coyote.example.com``.
        api_key: An API key, ``cyk_<prefix>_<secret>``.
        transport: An httpx transport, for tests (``httpx.MockTransport``) or proxies.
        timeout: Seconds to wait for the server on each request (log streams wait forever
            between lines).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"coyote-sdk/{__version__}",
            },
            transport=transport,
            timeout=timeout,
        )

    @classmethod
    def from_config(cls, **options: Any) -> ControlPlaneClient:
        """A client for the saved login (``coyote-sdk login``).

        ``COYOTE_API_URL`` and ``COYOTE_API_KEY`` override what was saved, so CI jobs need no
        login at all.

        Args:
            **options: Passed to the constructor (``transport``, ``timeout``).

        Raises:
            NotLoggedInError: Neither a saved login nor the variables give both the address
                and the key.
        """
        saved = load_credentials() or {}
        url = os.environ.get("COYOTE_API_URL") or saved.get("url")
        api_key = os.environ.get("COYOTE_API_KEY") or saved.get("api_key")
        if not url or not api_key:
            raise NotLoggedInError(
                "not logged in: run `coyote-sdk login --url URL` "
                "(or set COYOTE_API_URL and COYOTE_API_KEY)"
            )
        return cls(url, api_key, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- who ---------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The caller: ``user``, ``organization``, ``role`` and ``permissions``."""
        return self._json("GET", "/v1/auth/me")

    # -- bots --------------------------------------------------------------------------------

    def push(
        self,
        path_or_bundle: str | Path | Bundle,
        *,
        name: str | None = None,
        bot_class: str | None = None,
        signing_key: bytes | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Uploads a bot as its next version.

        Args:
            path_or_bundle: The bot's Python file (bundled here with the local modules it
                imports), a bundle file made by ``coyote-sdk bundle`` (``.tar.gz``), or a
                :class:`~coyote_sdk.bundles.Bundle`.
            name: The bot's name on the platform; by default the file's (see
                :func:`~coyote_sdk.bundles.build_bundle`). A bundle carries its own name.
            bot_class: The bot class, if the file defines several.
            signing_key: A private key (PEM) to sign the bundle's digest with; required once
                the organisation has registered signing keys (see :mod:`coyote_sdk.signing`).

        Returns:
            The version, and whether it is new: pushing a bundle that was pushed before
            answers its existing version and False.

        Raises:
            BundleError: The bot cannot be bundled (a syntax error, no bot class...); nothing
                was uploaded.
            ApiError: The control plane refused it.
        """
        from coyote_sdk.bundles import Bundle, BundleError

        built = (
            path_or_bundle
            if isinstance(path_or_bundle, Bundle)
            else _bundle_of(Path(path_or_bundle), name=name, bot_class=bot_class)
        )
        if name is not None and name != built.manifest.name:
            raise BundleError(f"the bundle is named {built.manifest.name!r}, not {name!r}")
        headers = {"Content-Type": "application/gzip", "X-Bundle-Digest": built.digest}
        if signing_key is not None:
            from coyote_sdk.signing import sign_digest

            headers["X-Bundle-Signature"] = sign_digest(signing_key, built.digest)
        response = self._request(
            "POST",
            f"/v1/bots/{_segment(built.manifest.name)}/versions",
            content=built.data,
            headers=headers,
        )
        return _decoded(response), response.status_code == 201

    def signing_keys(self) -> list[dict[str, Any]]:
        """The organisation's bundle signing keys, revoked ones included."""
        return list(self._json("GET", "/v1/signing-keys"))

    def add_signing_key(self, public_key: str, *, name: str) -> dict[str, Any]:
        """Registers a public key: from then on every push must be signed (admin)."""
        return dict(
            self._json("POST", "/v1/signing-keys", json={"public_key": public_key, "name": name})
        )

    def revoke_signing_key(self, key_id: str) -> dict[str, Any]:
        """Revokes a key: bundles signed only by it no longer push or launch (admin)."""
        return dict(self._json("DELETE", f"/v1/signing-keys/{_segment(key_id)}"))

    def bots(self) -> list[dict[str, Any]]:
        """The organisation's bots, with their latest version."""
        return self._json("GET", "/v1/bots")

    def versions(self, bot: str) -> list[dict[str, Any]]:
        """A bot's versions, oldest first, each with its bundle digest and parameters schema."""
        return self._json("GET", f"/v1/bots/{_segment(bot)}/versions")

    def releases(self, bot: str) -> list[dict[str, Any]]:
        """A bot's releases, oldest first: version, parameters and risk profile of each."""
        return self._json("GET", f"/v1/bots/{_segment(bot)}/releases")

    def create_release(
        self,
        bot: str,
        *,
        version: int | None = None,
        params: Mapping[str, Any] | None = None,
        risk_profile: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Makes a release of a bot version with parameters and a risk profile.

        Releases are content-addressed: the same content again answers the existing release.

        Returns:
            The release, and whether it is new.
        """
        body: dict[str, Any] = {
            "params": dict(params or {}),
            "risk_profile": dict(risk_profile or {}),
        }
        if version is not None:
            body["version"] = version
        response = self._request("POST", f"/v1/bots/{_segment(bot)}/releases", json=body)
        return _decoded(response), response.status_code == 201

    # -- accounts ----------------------------------------------------------------------------

    def accounts(self) -> list[dict[str, Any]]:
        """The organisation's trading accounts, with their risk limits and allocated capital."""
        return self._json("GET", "/v1/accounts")

    def account(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/accounts/{_segment(name)}")

    def create_account(
        self,
        name: str,
        *,
        broker: str,
        venue: str,
        currency: str = "USD",
        credentials_path: str | None = None,
        capital: str | None = None,
        broker_options: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Adds a trading account (admin). Its broker credentials stay in Vault: only their
        path is given.

        Args:
            name: The account's name.
            broker: ``paper``, ``alpaca`` or ``oanda``.
            venue: The market-data venue of its prices.
            currency: Its base currency.
            credentials_path: The Vault KV v2 path of the broker credentials.
            capital: What its deployments may be allocated in total, a decimal string.
            broker_options: A real broker's adapter options (``environment``,
                ``oanda_account_id``; see ``coyote_sdk.protocol.BROKER_OPTIONS``).
        """
        body: dict[str, Any] = {
            "name": name,
            "broker": broker,
            "venue": venue,
            "currency": currency,
        }
        if credentials_path is not None:
            body["credentials_path"] = credentials_path
        if capital is not None:
            body["capital"] = str(capital)
        if broker_options:
            body["broker_options"] = dict(broker_options)
        return self._json("POST", "/v1/accounts", json=body)

    def set_broker_options(self, name: str, options: Mapping[str, str]) -> dict[str, Any]:
        """Replaces a real broker account's adapter options (admin); ``{}`` restores every
        default (the broker's sandbox). Executors serving the account halt it until they are
        restarted."""
        return self._json(
            "PUT", f"/v1/accounts/{_segment(name)}/broker-options", json=dict(options)
        )

    def set_risk_limits(self, name: str, limits: Mapping[str, Any]) -> dict[str, Any]:
        """Replaces an account's risk limits (risk role): a risk document (docs/risk.md)."""
        return self._json("PUT", f"/v1/accounts/{_segment(name)}/risk-limits", json=dict(limits))

    def set_account_capital(self, name: str, capital: str) -> dict[str, Any]:
        """Sets the capital an account's deployments may be allocated in total (risk role)."""
        return self._json(
            "PUT", f"/v1/accounts/{_segment(name)}/capital", json={"capital": str(capital)}
        )

    def delete_account(self, name: str) -> None:
        """Removes an account no deployment trades (admin)."""
        self._request("DELETE", f"/v1/accounts/{_segment(name)}")

    # -- deployments -------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        *,
        bot: str,
        account: str,
        release: int | None = None,
        version: int | None = None,
        params: Mapping[str, Any] | None = None,
        risk_profile: Mapping[str, Any] | None = None,
        capital: str | int | None = None,
        start: bool = False,
    ) -> dict[str, Any]:
        """Deploys a bot to an account, stopped unless ``start``.

        Args:
            name: The deployment's name.
            bot: The bot's name.
            account: The trading account's name.
            release: An existing release of the bot; not with ``version`` or ``params``.
            version: The bot version to make a release of; the latest by default.
            params: The bot's parameters, checked against its schema by the server.
            risk_profile: The bot's own limits on the account (a ``[bots.<id>]`` section of
                a risk document); part of the release.
            capital: The deployment's capital allocation, a decimal string.
            start: Start it at once.

        Returns:
            The deployment.
        """
        body: dict[str, Any] = {"name": name, "bot": bot, "account": account, "start": start}
        if release is not None:
            body["release"] = release
        if version is not None:
            body["version"] = version
        if params is not None:
            body["params"] = dict(params)
        if risk_profile is not None:
            body["risk_profile"] = dict(risk_profile)
        if capital is not None:
            body["capital"] = str(capital)
        return self._json("POST", "/v1/deployments", json=body)

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment of the organisation, by name."""
        return self._json("GET", "/v1/deployments")

    def deployment(self, name: str) -> dict[str, Any]:
        """One deployment, with its runtime's last heartbeat when it has one."""
        return self._json("GET", f"/v1/deployments/{_segment(name)}")

    def action(self, name: str, action: str, *, reason: str | None = None) -> dict[str, Any]:
        """Starts, pauses, resumes or stops a deployment.

        Args:
            name: The deployment.
            action: One of :data:`ACTIONS`.
            reason: Kept in the audit log.

        Returns:
            The deployment, with its new desired state.

        Raises:
            ValueError: ``action`` is not one of :data:`ACTIONS`.
            ApiError: e.g. 409 ``deployment.invalid_transition`` to pause a stopped one.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        return self._json(
            "POST",
            f"/v1/deployments/{_segment(name)}/{action}",
            json=None if reason is None else {"reason": reason},
        )

    def rollback(self, name: str, release: int | None = None) -> dict[str, Any]:
        """Puts a deployment back on an earlier release: ``release``, or by default the one it
        ran before the current one. A running runtime restarts on it."""
        return self._json(
            "POST",
            f"/v1/deployments/{_segment(name)}/rollback",
            json=None if release is None else {"release": release},
        )

    def promote(self, name: str, release: int) -> dict[str, Any]:
        """Moves a deployment to another release of its bot; a running runtime restarts on it."""
        return self._json(
            "POST", f"/v1/deployments/{_segment(name)}/promote", json={"release": release}
        )

    def start_canary(
        self,
        name: str,
        *,
        release: int | None = None,
        version: int | None = None,
        params: Mapping[str, Any] | None = None,
        account: str | None = None,
        capital: str | int | None = None,
    ) -> dict[str, Any]:
        """Starts a canary of a deployment: another release of its bot, run beside it as a paper
        shadow on the same market data.

        Args:
            name: The live deployment.
            release: The release to try (its parameters, with ``params`` merged over them).
            version: Or the bot version to make a release of (the latest by default), with the
                live parameters and ``params`` merged over them.
            params: Parameters to change.
            account: A paper account; by default ``<live account>-shadow``, made when missing.
            capital: The canary's allocation; the live deployment's by default.

        Returns:
            The canary.

        Raises:
            ApiError: e.g. 409 ``canary.exists``, 422 ``canary.account_not_paper``.
        """
        body: dict[str, Any] = {}
        if release is not None:
            body["release"] = release
        if version is not None:
            body["version"] = version
        if params:
            body["params"] = dict(params)
        if account is not None:
            body["account"] = account
        if capital is not None:
            body["capital"] = str(capital)
        return self._json("POST", f"/v1/deployments/{_segment(name)}/canary", json=body)

    def canary(self, name: str, number: int | None = None) -> dict[str, Any]:
        """The deployment beside its canary (its latest, or ``number``) since the canary
        started: orders, fills and PnL of each side, and notes on what else differs."""
        return self._json(
            "GET",
            f"/v1/deployments/{_segment(name)}/canary",
            params=None if number is None else {"number": number},
        )

    def promote_canary(self, name: str, *, reason: str | None = None) -> dict[str, Any]:
        """Moves the deployment to its canary's release and ends the canary; answers the
        deployment."""
        return self._json(
            "POST",
            f"/v1/deployments/{_segment(name)}/canary/promote",
            json=None if reason is None else {"reason": reason},
        )

    def discard_canary(self, name: str, *, reason: str | None = None) -> dict[str, Any]:
        """Stops the deployment's canary without promoting it (its records stay)."""
        return self._json(
            "DELETE",
            f"/v1/deployments/{_segment(name)}/canary",
            json=None if reason is None else {"reason": reason},
        )

    def set_deployment_capital(self, name: str, capital: str) -> dict[str, Any]:
        """Changes a deployment's capital allocation (risk role)."""
        return self._json(
            "PUT", f"/v1/deployments/{_segment(name)}/capital", json={"capital": str(capital)}
        )

    def delete_deployment(self, name: str) -> None:
        """Removes a stopped deployment (its releases and audit entries stay)."""
        self._request("DELETE", f"/v1/deployments/{_segment(name)}")

    def logs(self, name: str, tail: int = 200) -> str:
        """The last ``tail`` lines of the deployment's runtime log."""
        return self._request(
            "GET", f"/v1/deployments/{_segment(name)}/logs", params={"tail": tail}
        ).text

    def follow_logs(self, name: str, tail: int = 200) -> Generator[str, None, None]:
        """The last ``tail`` lines of the runtime's log, then every new line as it is written.

        The stream does not end by itself: stop iterating (or close the generator) to end it.
        Lines come without their line break.

        Raises:
            ApiError: when it starts, as :meth:`logs`; ``connection.failed`` if the connection
                drops while following.
        """
        # No read timeout: a quiet bot writes nothing for a long time, and that is no failure.
        timeout = httpx.Timeout(self._timeout, read=None)
        try:
            with self._http.stream(
                "GET",
                f"/v1/deployments/{_segment(name)}/logs",
                params={"tail": tail, "follow": "true"},
                timeout=timeout,
            ) as response:
                if response.is_error:
                    response.read()
                    raise _error_of(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # -- plumbing ----------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _decoded(self._request(method, path, **kwargs))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            raise _error_of(response)
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        return ApiError(
            0, "connection.failed", f"cannot reach {self.url}: {str(exc) or type(exc).__name__}"
        )


def _segment(name: str) -> str:
    # A name is one path segment: quoting keeps "a/b" from reaching another route.
    return quote(name, safe="")


def _bundle_of(path: Path, *, name: str | None, bot_class: str | None) -> Bundle:
    from coyote_sdk.bundles import Bundle, BundleError, build_bundle, digest_of, verify_bundle

    if path.name.endswith((".tar.gz", ".tgz")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return Bundle(data=data, manifest=verify_bundle(data), digest=digest_of(data))
    if not path.is_file():
        raise BundleError(f"{path}: no such file")
    return build_bundle(path, name=name, bot_class=bot_class)


def _decoded(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ApiError(
            response.status_code,
            "response.invalid",
            f"the server answered {response.status_code} with a body that is not JSON: "
            f"{_excerpt(response.text)}",
        ) from exc


def _error_of(response: httpx.Response) -> ApiError:
    """The API's error shape ``{"error": {"code", "message", "field"}}``; for anything else (a
    proxy's HTML page, a load balancer's 502) the status and the start of the body."""
    try:
        error = response.json()["error"]
        return ApiError(
            response.status_code, str(error["code"]), str(error["message"]), error.get("field")
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = response.reason_phrase or "error"
        excerpt = _excerpt(response.text)
        return ApiError(
            response.status_code,
            f"http.{response.status_code}",
            f"{response.status_code} {reason}" + (f": {excerpt}" if excerpt else ""),
        )


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = [
    "ACTIONS",
    "ApiError",
    "ControlPlaneClient",
    "NotLoggedInError",
    "config_dir",
    "credentials_path",
    "forget_credentials",
    "load_credentials",
    "save_credentials",
]
