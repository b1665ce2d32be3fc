"""``coyote_sdk.vault.vault_client`` against the stack's real OpenBao: a static token, and the
Kubernetes auth method logging in with a service-account token.

OpenBao's Kubernetes auth method checks a login's JWT by asking the cluster's TokenReview API.
There is no cluster here, so the test serves that one endpoint itself, answering as the API
server documents (``authentication.k8s.io/v1`` TokenReview); everything on OpenBao's side —
the auth method, the role, the policy, the token it issues — is real.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import hvac
import pytest

from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.vault import VaultLoginError, vault_client

pytestmark = pytest.mark.integration

NAMESPACE = "coyote"
SERVICE_ACCOUNT = "coyote-executor"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_jwt(namespace: str, name: str, uid: str) -> str:
    """A projected service-account token's shape (claims as the kubelet issues them). Its
    signature is not checked by OpenBao without ``pem_keys``: the TokenReview answers for it."""
    now = int(time.time())
    header = {"alg": "RS256", "kid": "test", "typ": "JWT"}
    claims = {
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
            "pod": {"name": f"{name}-0", "uid": str(uuid.uuid4())},
        },
    }
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), uuid.uuid4().bytes * 8)
    return ".".join(b64url(part) for part in parts)


class TokenReviewAPI:
    """The Kubernetes API's ``POST /apis/authentication.k8s.io/v1/tokenreviews``: tokens it
    issued are authenticated as their service account; any other is not."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, str, str]] = {}
        self.reviews: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def issue(self, namespace: str = NAMESPACE, name: str = SERVICE_ACCOUNT) -> str:
        uid = str(uuid.uuid4())
        token = service_account_jwt(namespace, name, uid)
        self.tokens[token] = (namespace, name, uid)
        return token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.reviews.append(body)
                if self.path.split("?")[0] != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._answer(404, {"kind": "Status", "apiVersion": "v1", "code": 404})
                    return
                review = {
                    "kind": "TokenReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": None},
                    "spec": body.get("spec", {}),
                }
                known = api.tokens.get(body.get("spec", {}).get("token", ""))
                if known is None:
                    review["status"] = {"user": {}, "error": "[invalid bearer token]"}
                else:
                    namespace, name, uid = known
                    review["status"] = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{namespace}:{name}",
                            "uid": uid,
                            "groups": [
                                "system:serviceaccounts",
                                f"system:serviceaccounts:{namespace}",
                                "system:authenticated",
                            ],
                        },
                        "audiences": body.get("spec", {}).get("audiences")
                        or ["https://kubernetes.default.svc.cluster.local"],
                    }
                self._answer(201, review)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> TokenReviewAPI:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def kubernetes_auth(
    vault: tuple[hvac.Client, str], unique: str
) -> Iterator[tuple[TokenReviewAPI, str, str]]:
    """The Kubernetes auth method at a mount of the test's own, pointed at a TokenReview API,
    with a role for the executor's service account that may read the test's secrets. Yields
    the API, the mount and the role."""
    root, prefix = vault
    mount = f"kubernetes-{unique}"
    role = f"executor-{unique}"
    policy = f"test-{unique}"
    with TokenReviewAPI() as api:
        root.sys.enable_auth_method("kubernetes", path=mount)
        try:
            root.auth.kubernetes.configure(
                kubernetes_host=api.url,
                # Not in a pod: no local CA or token to fall back on. The API is plain HTTP
                # here, so the CA (any certificate will do) is never used.
                kubernetes_ca_cert=a_ca_certificate(),
                disable_local_ca_jwt=True,
                mount_point=mount,
            )
            root.sys.create_or_update_policy(
                policy, f'path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}'
            )
            root.auth.kubernetes.create_role(
                role,
                bound_service_account_names=[SERVICE_ACCOUNT],
                bound_service_account_namespaces=[NAMESPACE],
                policies=[policy],
                ttl="1h",
                mount_point=mount,
            )
            yield api, mount, role
        finally:
            root.sys.disable_auth_method(mount)
            root.sys.delete_policy(policy)


def a_ca_certificate() -> str:
    bundle = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    return bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end) + len(end)]


def kubernetes_settings(
    endpoints: Endpoints, token_file: Path, mount: str, role: str
) -> StackSettings:
    return StackSettings(
        vault_addr=endpoints.vault_addr,
        vault_auth="kubernetes",
        vault_kubernetes_role=role,
        vault_kubernetes_mount=mount,
        vault_kubernetes_token_path=token_file,
    )


# -- token -------------------------------------------------------------------------------------


def test_the_token_method_reads_with_the_configured_token(
    endpoints: Endpoints, vault: tuple[hvac.Client, str]
) -> None:
    root, prefix = vault
    root.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/alpaca", secret={"key": "k-1"})
    settings = StackSettings(vault_addr=endpoints.vault_addr, vault_token=endpoints.vault_token)

    client = vault_client(settings)

    answer = client.secrets.kv.v2.read_secret_version(
        path=f"{prefix}/alpaca", raise_on_deleted_version=True
    )
    assert answer["data"]["data"] == {"key": "k-1"}
    assert client.token == endpoints.vault_token


# -- kubernetes --------------------------------------------------------------------------------


def test_the_kubernetes_method_logs_in_with_the_service_account_token_and_reads(
    endpoints: Endpoints,
    vault: tuple[hvac.Client, str],
    kubernetes_auth: tuple[TokenReviewAPI, str, str],
    tmp_path: Path,
) -> None:
    api, mount, role = kubernetes_auth
    root, prefix = vault
    root.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/oanda", secret={"token": "t-1"})
    jwt = api.issue()
    (tmp_path / "token").write_text(jwt + "\n")

    client = vault_client(kubernetes_settings(endpoints, tmp_path / "token", mount, role))
    assert api.reviews == []  # the login waits for the first request

    answer = client.secrets.kv.v2.read_secret_version(
        path=f"{prefix}/oanda", raise_on_deleted_version=True
    )

    assert answer["data"]["data"] == {"token": "t-1"}
    assert [review["spec"]["token"] for review in api.reviews] == [jwt]
    assert client.token and client.token != endpoints.vault_token
    looked_up = root.auth.token.lookup(client.token)["data"]
    assert f"test-{mount.removeprefix('kubernetes-')}" in looked_up["policies"]
    assert looked_up["meta"]["service_account_name"] == SERVICE_ACCOUNT
    # The policy is the role's: nothing outside the test's prefix.
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_version(
            path="coyote/accounts/other", raise_on_deleted_version=True
        )


def test_a_revoked_token_is_replaced_by_logging_in_again(
    endpoints: Endpoints,
    vault: tuple[hvac.Client, str],
    kubernetes_auth: tuple[TokenReviewAPI, str, str],
    tmp_path: Path,
) -> None:
    api, mount, role = kubernetes_auth
    root, prefix = vault
    root.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/a", secret={"v": "1"})
    (tmp_path / "token").write_text(api.issue())
    client = vault_client(kubernetes_settings(endpoints, tmp_path / "token", mount, role))
    client.secrets.kv.v2.read_secret_version(path=f"{prefix}/a", raise_on_deleted_version=True)
    first = client.token

    root.auth.token.revoke(first)
    answer = client.secrets.kv.v2.read_secret_version(
        path=f"{prefix}/a", raise_on_deleted_version=True
    )

    assert answer["data"]["data"] == {"v": "1"}
    assert client.token != first
    assert len(api.reviews) == 2


def test_the_login_is_renewed_before_vaults_token_expires(
    endpoints: Endpoints,
    vault: tuple[hvac.Client, str],
    kubernetes_auth: tuple[TokenReviewAPI, str, str],
    tmp_path: Path,
) -> None:
    api, mount, role = kubernetes_auth
    root, prefix = vault
    root.auth.kubernetes.create_role(
        role,
        bound_service_account_names=[SERVICE_ACCOUNT],
        bound_service_account_namespaces=[NAMESPACE],
        policies=[f"test-{mount.removeprefix('kubernetes-')}"],
        ttl="3s",
        mount_point=mount,
    )
    root.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/b", secret={"v": "2"})
    token_file = tmp_path / "token"
    token_file.write_text(api.issue())
    client = vault_client(kubernetes_settings(endpoints, token_file, mount, role))
    client.secrets.kv.v2.read_secret_version(path=f"{prefix}/b", raise_on_deleted_version=True)
    first = client.token
    # The kubelet rotates the projected token in place: the next login presents the new one.
    rotated = api.issue()
    token_file.write_text(rotated)

    time.sleep(2.2)  # past two thirds of the 3 s lease, before it ends
    client.secrets.kv.v2.read_secret_version(path=f"{prefix}/b", raise_on_deleted_version=True)

    assert client.token != first
    assert api.reviews[-1]["spec"]["token"] == rotated
    assert len(api.reviews) == 2


def test_a_refused_login_names_the_role_and_mount_and_not_the_token(
    endpoints: Endpoints,
    kubernetes_auth: tuple[TokenReviewAPI, str, str],
    tmp_path: Path,
) -> None:
    _, mount, role = kubernetes_auth
    # Signed by nobody the TokenReview knows.
    forged = service_account_jwt(NAMESPACE, SERVICE_ACCOUNT, str(uuid.uuid4()))
    (tmp_path / "token").write_text(forged)
    client = vault_client(kubernetes_settings(endpoints, tmp_path / "token", mount, role))

    with pytest.raises(VaultLoginError) as refused:
        client.secrets.kv.v2.read_secret_version(path="anything", raise_on_deleted_version=True)

    message = str(refused.value)
    assert f"role {role!r} at auth/{mount}" in message
    assert forged not in message


def test_a_missing_service_account_token_is_named(endpoints: Endpoints, tmp_path: Path) -> None:
    settings = kubernetes_settings(endpoints, tmp_path / "absent", "kubernetes", "executor")
    client = vault_client(settings)

    with pytest.raises(VaultLoginError, match=r"cannot read the service-account token .*absent"):
        client.secrets.kv.v2.read_secret_version(path="anything", raise_on_deleted_version=True)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_kubernetes_method_needs_a_role_but_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COYOTE_VAULT_TOKEN", raising=False)
    monkeypatch.setenv("COYOTE_VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv("COYOTE_VAULT_AUTH", "kubernetes")

    with pytest.raises(ValueError, match="COYOTE_VAULT_KUBERNETES_ROLE must be set"):
        StackSettings()

    monkeypatch.setenv("COYOTE_VAULT_KUBERNETES_ROLE", "coyote-executor")
    settings = StackSettings()
    assert settings.vault_auth == "kubernetes"
    assert settings.vault_kubernetes_token_path == Path(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


@pytest.mark.unit
def test_an_external_vault_with_the_token_method_still_needs_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COYOTE_VAULT_TOKEN", raising=False)
    monkeypatch.setenv("COYOTE_VAULT_ADDR", "https://vault.internal:8200")

    with pytest.raises(ValueError, match="COYOTE_VAULT_TOKEN must be set"):
        StackSettings()
