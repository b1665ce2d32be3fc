"""The Kubernetes runtime backend: each bot runtime is a one-replica Deployment.

A launch puts the bundle into an immutable ConfigMap named after its digest (shared by every
runtime of that bundle), the runtime's credentials (:attr:`RuntimeSpec.secret_env`) into a
Secret of its own, and creates, or replaces, a Deployment that runs ``coyote-sdk run`` on it
with those credentials referenced, never written into it. Kubernetes then keeps the pod running
and restarts it when it crashes (:attr:`KubernetesBackend.restarts_itself`); the supervisor only
observes.

The backend talks to the API server over plain HTTPS with :mod:`httpx` (no Kubernetes client
library): a bearer token, the cluster's CA, 10 s timeouts. Inside a cluster,
:meth:`KubernetesBackend.in_cluster` reads all of that from the pod's service account.

The service account needs, in the bots' namespace (a ``Role``, not a ``ClusterRole``)::

    - apiGroups: [""]
      resources: [configmaps]
      verbs: [create]
    - apiGroups: [""]
      resources: [secrets]
      verbs: [create, update, delete]
    - apiGroups: [apps]
      resources: [deployments]
      verbs: [get, create, update, patch, delete]
    - apiGroups: [""]
      resources: [pods]
      verbs: [list, delete]
    - apiGroups: [""]
      resources: [pods/log]
      verbs: [get]

A refused request raises :class:`~.backends.BackendError` naming the verb and resource missing.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from coyote_control_plane.supervisor.backends import (
    BackendError,
    LogChunk,
    Observation,
    RuntimeBackend,
    RuntimeSpec,
)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where Kubernetes mounts a pod's service-account token, CA certificate and namespace."""

MAX_BUNDLE_BYTES = 1_000_000
"""The largest bundle launched: a ConfigMap holds at most 1 MiB, and its object (base64, labels)
must fit too."""

DEPLOYMENT_PREFIX = "coyote-bot-"
BUNDLE_PREFIX = "coyote-bundle-"
CONTAINER = "bot"
BUNDLE_DIR = "/bundle"
BUNDLE_FILE = "bundle.tar.gz"
TERMINATION_GRACE_S = 30

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNTIME_ID = "coyote.dev/runtime-id"
LABEL_DIGEST_PREFIX = "coyote.dev/digest-prefix"
ANNOTATION_RUNTIME_ID = "coyote.dev/runtime-id"
ANNOTATION_RELEASE = "coyote.dev/release"
ANNOTATION_DIGEST = "coyote.dev/bundle-digest"
ANNOTATION_SECRET_CHECKSUM = "coyote.dev/secret-env-sha256"
MANAGER = "coyote"

TIMEOUT = httpx.Timeout(10.0)
"""Every request: an API server that has not answered in 10 s is treated as unreachable."""

_MAX_NAME = 63  # a DNS-1123 label, which pod names derived from the Deployment's must be
_HASH_LEN = 10  # 40 bits of sha256: ids that collide on it are not a practical concern
_TOKEN_REFRESH_S = 60.0  # bound service-account tokens rotate; client-go re-reads each minute
_FOLLOW_LIMIT_BYTES = 1 << 20  # one follow call reads at most this much; the next goes on
_PUT_ATTEMPTS = 3  # a replace lost to a concurrent writer (409 Conflict) is read and sent again

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_LOG_LINE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2}) ?(.*)$", re.DOTALL
)
# Container waiting reasons that mean "not running, and not about to": the pod exists, but
# nothing of the bot runs (Kubernetes may retry it on its own back-off).
_STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreStartHookError",
        "PostStartHookError",
    }
)


def deployment_name(runtime_id: str) -> str:
    """The Deployment name of a runtime: ``coyote-bot-<id>`` as a DNS label, never shared.

    An id that already is a valid DNS label (lowercase letters, digits, inner hyphens; no
    ``--``) and fits is used as it is. Any other id is lowercased, every character outside
    ``[a-z0-9-]`` becomes ``-``, the result is cut to fit, and ``--`` plus a hash of the exact
    id is appended. Mapping is lossy (``acme.sma-live`` and ``acme-sma.live`` map alike), so the
    hash tells such ids apart; and since only hashed names contain ``--``, a hashed name never
    equals an unhashed one.

    Args:
        runtime_id: The runtime's bot id, e.g. ``acme.sma-live``.

    Returns:
        At most 63 characters of ``[a-z0-9-]``, starting and ending with a letter or digit.
    """
    if (
        _DNS_LABEL.match(runtime_id)
        and "--" not in runtime_id
        and len(DEPLOYMENT_PREFIX) + len(runtime_id) <= _MAX_NAME
    ):
        return DEPLOYMENT_PREFIX + runtime_id
    digest = hashlib.sha256(runtime_id.encode()).hexdigest()[:_HASH_LEN]
    room = _MAX_NAME - len(DEPLOYMENT_PREFIX) - 2 - _HASH_LEN
    stem = re.sub(r"[^a-z0-9-]", "-", runtime_id.lower())[:room].strip("-") or "id"
    return f"{DEPLOYMENT_PREFIX}{stem}--{digest}"


def runtime_label(runtime_id: str) -> str:
    """The ``coyote.dev/runtime-id`` label value of a runtime: the id itself when it is a valid
    label value (no ``--``, at most 63 characters), otherwise its Deployment name's hashed
    suffix. Like :func:`deployment_name` it never gives two ids the same value, so it selects
    exactly one runtime's pods (the exact id is in the ``coyote.dev/runtime-id`` annotation)."""
    if _LABEL_VALUE.match(runtime_id) and "--" not in runtime_id and len(runtime_id) <= _MAX_NAME:
        return runtime_id
    return deployment_name(runtime_id).removeprefix(DEPLOYMENT_PREFIX)


def bundle_configmap_name(digest: str) -> str:
    """The ConfigMap holding a bundle: ``coyote-bundle-<first 12 hex digits of its digest>``.

    Raises:
        BackendError: ``digest`` is not ``sha256:`` and 64 lowercase hex digits.
    """
    match = _DIGEST.match(digest)
    if not match:
        raise BackendError(f"bundle digest must be sha256:<64 hex digits>, got {digest!r}")
    return BUNDLE_PREFIX + match.group(1)[:12]


class _BearerToken(httpx.Auth):
    """Sends ``Authorization: Bearer``; a token read from a file is re-read every minute, since
    the kubelet rotates projected service-account tokens in place."""

    def __init__(self, token: str | None, token_file: Path | None) -> None:
        self._token = token
        self._file = token_file
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def _current(self) -> str | None:
        if self._file is None:
            return self._token
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= _TOKEN_REFRESH_S:
                try:
                    self._token = self._file.read_text().strip()
                except OSError as exc:
                    # Keep the token read before: a failed re-read must not log us out.
                    if self._token is None:
                        raise BackendError(f"cannot read the token {self._file}: {exc}") from exc
                self._read_at = now
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._current()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class KubernetesBackend(RuntimeBackend):
    """Runs each bot runtime as a one-replica ``Recreate`` Deployment in one namespace.

    Args:
        api_url: The API server, e.g. ``https://10.96.0.1:443``.
        namespace: Where the runtimes' Deployments, ConfigMaps and pods live.
        image: The runtime image; it must have ``coyote-sdk`` on its ``PATH`` and run as a
            numeric non-root user (the pod sets ``runAsNonRoot``).
        token: A bearer token for the API server.
        ca_cert: A PEM file of the CA that signed the API server's certificate (otherwise the
            system's CAs are trusted).
        env: Environment of the runtime container without credentials
            (``COYOTE_KAFKA_BOOTSTRAP``): these are written into the Deployment as they are.
            A spec's ``secret_env`` goes over it, through a Secret.
        service_account: The pods' service account; without one the pods get no API token.
        resources: The container's ``resources`` (``requests``/``limits``) as Kubernetes takes
            them; without them the namespace's LimitRange (if any) applies.
        image_pull_policy: ``IfNotPresent``, ``Always`` or ``Never``.
        transport: An httpx transport to use instead of the network (tests).
        token_file: A file to read the token from, re-read every minute (in-cluster tokens
            rotate); it takes precedence over ``token``.
    """

    name = "kubernetes"
    restarts_itself = True

    def __init__(
        self,
        *,
        api_url: str,
        namespace: str,
        image: str,
        token: str | None = None,
        ca_cert: str | None = None,
        env: Mapping[str, str] | None = None,
        service_account: str | None = None,
        resources: Mapping[str, Any] | None = None,
        image_pull_policy: str = "IfNotPresent",
        transport: httpx.BaseTransport | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not api_url:
            raise ValueError("`api_url` must not be empty")
        if not _DNS_LABEL.match(namespace):
            raise ValueError(f"`namespace` must be a DNS label, got {namespace!r}")
        if not image:
            raise ValueError("`image` must not be empty")
        if image_pull_policy not in ("IfNotPresent", "Always", "Never"):
            raise ValueError(f"unknown image pull policy {image_pull_policy!r}")
        self.api_url = api_url.rstrip("/")
        self.namespace = namespace
        self.image = image
        self.env = dict(env or {})
        self.service_account = service_account
        self.resources = dict(resources) if resources is not None else None
        self.image_pull_policy = image_pull_policy
        verify: ssl.SSLContext | bool = True
        if ca_cert is not None:
            try:
                verify = ssl.create_default_context(cafile=ca_cert)
            except (OSError, ssl.SSLError) as exc:
                raise BackendError(f"cannot load the CA certificate {ca_cert}: {exc}") from exc
        self._client = httpx.Client(
            base_url=self.api_url,
            auth=_BearerToken(token, Path(token_file) if token_file is not None else None),
            verify=verify,
            timeout=TIMEOUT,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "coyote-control-plane"},
        )

    @classmethod
    def in_cluster(
        cls,
        *,
        image: str,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        service_account: str | None = None,
        resources: Mapping[str, Any] | None = None,
        image_pull_policy: str = "IfNotPresent",
        transport: httpx.BaseTransport | None = None,
        secrets_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
    ) -> KubernetesBackend:
        """A backend for a control plane that runs in a pod of the cluster itself.

        The API server comes from ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``; the
        token, CA certificate and (unless given) namespace from the pod's service account.

        Args:
            image: The runtime image.
            namespace: Where the runtimes go; the control plane's own namespace if not given.
            env: Environment of the runtime container.
            service_account: The runtime pods' service account.
            resources: The runtime container's ``resources``.
            image_pull_policy: ``IfNotPresent``, ``Always`` or ``Never``.
            transport: An httpx transport to use instead of the network (tests).
            secrets_dir: Where the service account is mounted (tests point it elsewhere).

        Raises:
            BackendError: Not in a pod, or the service account is not mounted.
        """
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise BackendError(
                "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST/PORT are not set"
            )
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        secrets = Path(secrets_dir)
        token_file = secrets / "token"
        if not token_file.is_file():
            raise BackendError(
                f"no service-account token at {token_file}: is automountServiceAccountToken off?"
            )
        ca_file = secrets / "ca.crt"
        if namespace is None:
            try:
                namespace = (secrets / "namespace").read_text().strip()
            except OSError as exc:
                raise BackendError(f"cannot read the pod's namespace: {exc}") from exc
        return cls(
            api_url=f"https://{host}:{port}",
            namespace=namespace,
            image=image,
            ca_cert=str(ca_file) if ca_file.is_file() else None,
            env=env,
            service_account=service_account,
            resources=resources,
            image_pull_policy=image_pull_policy,
            transport=transport,
            token_file=token_file,
        )

    # -- the RuntimeBackend interface ------------------------------------------------------

    def launch(self, spec: RuntimeSpec) -> str:
        """Stores the bundle in its ConfigMap, the spec's ``secret_env`` in the runtime's Secret,
        and creates or replaces the runtime's Deployment.

        Replacing uses ``PUT`` with the ``resourceVersion`` just read rather than server-side
        apply: the supervisor is the Deployment's only owner, so a full replace (which also drops
        anything edited into it by hand) is what we want, it needs no ``patch`` permission for
        it, and a concurrent change is detected (409 Conflict) instead of silently merged.
        Because the strategy is ``Recreate``, a changed pod template stops the old pod before the
        new one starts: two runtimes of one bot never overlap. Launching an unchanged spec again
        leaves a running pod alone (and scales a stopped one back to 1).

        Args:
            spec: The runtime to launch.

        Returns:
            The Deployment's name.

        Raises:
            BackendError: The bundle is too large, a Deployment of that name is not this
                runtime's or is being deleted, or the API server refused.
        """
        if len(spec.bundle) > MAX_BUNDLE_BYTES:
            raise BackendError(
                f"bundle of {len(spec.bundle):,} bytes is too large for the Kubernetes backend: "
                f"it is stored in a ConfigMap, and ConfigMaps hold at most 1 MiB "
                f"(limit {MAX_BUNDLE_BYTES:,} bytes)"
            )
        configmap = bundle_configmap_name(spec.digest)
        self._ensure_bundle(configmap, spec)
        name = deployment_name(spec.runtime_id)
        if spec.secret_env:
            # Before the Deployment: a pod whose Secret is missing cannot start.
            self._write_secret(name, spec)
        body = self._deployment(name, configmap, spec)
        created = self._send("POST", self._apps_path("deployments"), json_body=body, allow=(409,))
        if created.status_code != 409:
            return name
        for attempt in range(_PUT_ATTEMPTS):
            current = self._send("GET", self._apps_path("deployments", name), allow=(404,))
            if current.status_code == 404:
                # Deleted between our POST and GET: create it after all.
                self._send("POST", self._apps_path("deployments"), json_body=body)
                return name
            existing = current.json()
            self._check_ours(existing, spec.runtime_id)
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            replaced = self._send(
                "PUT",
                self._apps_path("deployments", name),
                json_body=body,
                allow=(409,) if attempt < _PUT_ATTEMPTS - 1 else (),
            )
            if replaced.status_code != 409:
                return name
        raise AssertionError("unreachable: the last PUT raises on 409")  # pragma: no cover

    def observe(self, runtime_id: str) -> Observation:
        """The runtime's Deployment and pods as the API server sees them now.

        ``alive`` means the Deployment wants a replica and one of its pods runs, or is starting.
        A pod whose container crashed and waits on Kubernetes' back-off (``CrashLoopBackOff``)
        or cannot start (``ImagePullBackOff``, ``CreateContainerConfigError``, ...) is *not*
        alive: nothing of the bot runs, though Kubernetes keeps retrying. Its reason and message
        are the ``detail``, the last run's exit code the ``exit_code``.

        Args:
            runtime_id: The runtime's bot id.

        Returns:
            ``Observation(alive=False)`` when no Deployment exists.
        """
        name = deployment_name(runtime_id)
        found = self._send("GET", self._apps_path("deployments", name), allow=(404,))
        if found.status_code == 404:
            return Observation(alive=False)
        deployment = found.json()
        replicas = deployment.get("spec", {}).get("replicas", 1)
        pods = self._pods(runtime_id)
        restarts = sum(
            int(status.get("restartCount", 0))
            for pod in pods
            for status in pod.get("status", {}).get("containerStatuses") or []
        )
        alive = replicas > 0 and any(_pod_alive(pod) for pod in pods)
        newest = _newest(pods)
        if replicas == 0:
            detail: str | None = "stopping: scaled to 0" if pods else "stopped: scaled to 0"
        elif newest is None:
            detail = _deployment_problem(deployment)
        else:
            detail = _pod_detail(newest)
        exit_code = None if alive or newest is None else _exit_code(newest)
        return Observation(
            alive=alive, exit_code=exit_code, ref=name, detail=detail, restarts=restarts
        )

    def terminate(self, runtime_id: str, *, force: bool = False) -> None:
        """Scales the runtime's Deployment to 0: its pod gets SIGTERM and up to 30 s to stop.

        Args:
            runtime_id: The runtime's bot id.
            force: Also delete its pods at once (grace period 0: SIGKILL).
        """
        name = deployment_name(runtime_id)
        # A merge patch of spec.replicas rather than the scale subresource: one RBAC resource
        # (deployments) covers everything the backend does to a Deployment.
        scaled = self._send(
            "PATCH",
            self._apps_path("deployments", name),
            json_body={"spec": {"replicas": 0}},
            content_type="application/merge-patch+json",
            allow=(404,),
        )
        if scaled.status_code == 404 or not force:
            return
        for pod in self._pods(runtime_id):
            self._send(
                "DELETE",
                self._core_path("pods", pod["metadata"]["name"]),
                params={"gracePeriodSeconds": "0"},
                allow=(404,),
            )

    def remove(self, runtime_id: str) -> None:
        """Deletes the runtime's Deployment, its ReplicaSets and pods, and its Secret.

        ``Foreground`` propagation keeps the Deployment (marked for deletion) until its pods are
        gone, so a launch of the same runtime meanwhile is refused instead of starting a pod
        beside a still-terminating one.

        Args:
            runtime_id: The runtime's bot id.
        """
        # The bundle's ConfigMap stays: it is named by digest and shared by every runtime of the
        # same bundle, so deleting it here could pull it from under another Deployment.
        name = deployment_name(runtime_id)
        self._send(
            "DELETE",
            self._apps_path("deployments", name),
            params={"propagationPolicy": "Foreground"},
            allow=(404,),
        )
        # Pods read their environment when they start: the ones still stopping need it no more.
        self._send("DELETE", self._core_path("secrets", name), allow=(404,))

    def logs(
        self, runtime_id: str, *, tail: int = 200, since_offset: int | None = None
    ) -> LogChunk:
        """The bot container's log lines from the runtime's newest pod, without timestamps.

        Offsets are epoch milliseconds of the lines' kubelet timestamps. Following asks for the
        lines since the offset's second and keeps those strictly after it; two lines written in
        the same millisecond on either side of a call would lose the second one.

        Args:
            runtime_id: The runtime's bot id.
            tail: How many of the last lines to return when not following.
            since_offset: The ``next_offset`` of an earlier chunk: return only later lines.

        Returns:
            The lines; ``next_offset`` is the timestamp of the last one (or ``since_offset``,
            or 0, when there are none).
        """
        start = since_offset if since_offset is not None else 0
        pod = _newest(self._pods(runtime_id))
        if pod is None:
            return LogChunk(lines=[], next_offset=start)
        params: dict[str, str] = {"container": CONTAINER, "timestamps": "true"}
        if since_offset is None:
            params["tailLines"] = str(max(0, tail))
        else:
            since = datetime.fromtimestamp(since_offset // 1000, UTC)
            params["sinceTime"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
            params["limitBytes"] = str(_FOLLOW_LIMIT_BYTES)
        answer = self._send(
            "GET",
            self._core_path("pods", pod["metadata"]["name"], "log"),
            params=params,
            # 400: the container has not started yet (ContainerCreating) and has no log;
            # 404: the pod went away since we listed it. Either way: nothing to show now.
            allow=(400, 404),
        )
        if answer.status_code in (400, 404):
            return LogChunk(lines=[], next_offset=start)
        text = answer.text
        raw = text.split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        elif since_offset is not None and len(answer.content) >= _FOLLOW_LIMIT_BYTES // 2:
            # Cut off by limitBytes mid-line: the next call returns that line whole.
            raw.pop()
        lines: list[str] = []
        offset = start
        for line in raw:
            parsed = _LOG_LINE.match(line)
            if parsed is None:  # no timestamp (should not happen): keep it, at the last offset
                if since_offset is None or lines:
                    lines.append(line)
                continue
            ms = _epoch_ms(parsed.group(1), parsed.group(2), parsed.group(3))
            if since_offset is not None and ms <= since_offset:
                continue
            lines.append(parsed.group(4))
            offset = ms
        return LogChunk(lines=lines, next_offset=offset)

    def close(self) -> None:
        """Closes the HTTP client; the runtimes keep running."""
        self._client.close()

    # -- objects -----------------------------------------------------------------------------

    def _ensure_bundle(self, name: str, spec: RuntimeSpec) -> None:
        """Creates the bundle's immutable ConfigMap unless it exists.

        An existing one (409) is taken as is: its name is the digest's first 48 bits, and the
        runtime verifies the full digest on start, so a (practically impossible) collision fails
        loudly rather than running the wrong bundle.
        """
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {
                    LABEL_MANAGED_BY: MANAGER,
                    LABEL_DIGEST_PREFIX: name.removeprefix(BUNDLE_PREFIX),
                },
                "annotations": {ANNOTATION_DIGEST: spec.digest},
            },
            "immutable": True,
            "binaryData": {BUNDLE_FILE: base64.b64encode(spec.bundle).decode("ascii")},
        }
        self._send("POST", self._core_path("configmaps"), json_body=body, allow=(409,))

    def _write_secret(self, name: str, spec: RuntimeSpec) -> None:
        """Creates the runtime's Secret (named like its Deployment) holding its ``secret_env``,
        or replaces it. Secrets may be replaced without their ``resourceVersion``, so the
        supervisor never reads one: it has no ``get`` on Secrets, and can read none."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": self._labels(spec.runtime_id),
                "annotations": {ANNOTATION_RUNTIME_ID: spec.runtime_id},
            },
            "type": "Opaque",
            "data": {
                key: base64.b64encode(value.encode()).decode("ascii")
                for key, value in sorted(spec.secret_env.items())
            },
        }
        created = self._send("POST", self._core_path("secrets"), json_body=body, allow=(409,))
        if created.status_code == 409:
            self._send("PUT", self._core_path("secrets", name), json_body=body)

    def _labels(self, runtime_id: str) -> dict[str, str]:
        return {
            LABEL_NAME: "coyote-bot",
            LABEL_MANAGED_BY: MANAGER,
            LABEL_RUNTIME_ID: runtime_label(runtime_id),
        }

    def _selector(self, runtime_id: str) -> str:
        labels = self._labels(runtime_id)
        return ",".join(f"{key}={labels[key]}" for key in (LABEL_NAME, LABEL_RUNTIME_ID))

    def _deployment(self, name: str, configmap: str, spec: RuntimeSpec) -> dict[str, Any]:
        labels = self._labels(spec.runtime_id)
        annotations = {
            ANNOTATION_RUNTIME_ID: spec.runtime_id,
            ANNOTATION_RELEASE: spec.release,
            ANNOTATION_DIGEST: spec.digest,
        }
        template_annotations = dict(annotations)
        env: list[dict[str, Any]] = [
            {"name": key, "value": value}
            for key, value in sorted(self.env.items())
            if key not in spec.secret_env
        ]
        if spec.secret_env:
            env += [
                {"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
                for key in sorted(spec.secret_env)
            ]
            # A pod reads its Secret only when it starts: a changed one must roll it.
            template_annotations[ANNOTATION_SECRET_CHECKSUM] = hashlib.sha256(
                json.dumps(dict(spec.secret_env), sort_keys=True).encode()
            ).hexdigest()
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "command": ["coyote-sdk"],
            "args": spec.command_args(f"{BUNDLE_DIR}/{BUNDLE_FILE}"),
            "env": env,
            "volumeMounts": [
                {"name": "bundle", "mountPath": BUNDLE_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "securityContext": {
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
        if self.resources is not None:
            container["resources"] = self.resources
        pod_spec: dict[str, Any] = {
            "containers": [container],
            "volumes": [
                {"name": "bundle", "configMap": {"name": configmap}},
                {"name": "tmp", "emptyDir": {}},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            # Bot code is the user's: it never gets a Kubernetes API token (a named service
            # account serves cloud identity or image pull secrets, not the API), nor
            # environment variables for every Service of the namespace.
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        }
        if self.service_account is not None:
            pod_spec["serviceAccountName"] = self.service_account
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": {
                "replicas": 1,
                # Recreate: the old pod is gone before the new one starts, so two runtimes of
                # one bot (the same bot id, the same account) never trade at once.
                "strategy": {"type": "Recreate"},
                "revisionHistoryLimit": 2,
                "selector": {
                    "matchLabels": {
                        LABEL_NAME: labels[LABEL_NAME],
                        LABEL_RUNTIME_ID: labels[LABEL_RUNTIME_ID],
                    }
                },
                "template": {
                    "metadata": {"labels": labels, "annotations": template_annotations},
                    "spec": pod_spec,
                },
            },
        }

    def _check_ours(self, existing: Mapping[str, Any], runtime_id: str) -> None:
        """Refuses to replace a Deployment that is not this runtime's, or is being deleted."""
        metadata = existing.get("metadata", {})
        name = metadata.get("name")
        if metadata.get("annotations", {}).get(ANNOTATION_RUNTIME_ID) != runtime_id:
            raise BackendError(
                f"Deployment {name} exists but is not runtime {runtime_id}'s "
                f"(its {ANNOTATION_RUNTIME_ID} annotation differs); not replacing it"
            )
        if metadata.get("deletionTimestamp"):
            raise BackendError(
                f"Deployment {name} is being deleted; launch again once its pods are gone"
            )

    def _pods(self, runtime_id: str) -> list[dict[str, Any]]:
        answer = self._send(
            "GET", self._core_path("pods"), params={"labelSelector": self._selector(runtime_id)}
        )
        items = answer.json().get("items") or []
        return [pod for pod in items if isinstance(pod, dict)]

    # -- HTTP ----------------------------------------------------------------------------------

    def _apps_path(self, resource: str, name: str | None = None) -> str:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/{resource}"
        return f"{path}/{name}" if name else path

    def _core_path(self, resource: str, name: str | None = None, sub: str | None = None) -> str:
        path = f"/api/v1/namespaces/{self.namespace}/{resource}"
        if name:
            path = f"{path}/{name}"
        return f"{path}/{sub}" if sub else path

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content_type: str = "application/json",
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Sends one request; answers 2xx and the ``allow``ed statuses, raises on the rest."""
        content = None
        headers = {}
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type
        try:
            response = self._client.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"Kubernetes API unreachable at {self.api_url} ({method} {path}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if response.is_success or response.status_code in allow:
            return response
        raise self._error(method, path, response)

    def _error(self, method: str, path: str, response: httpx.Response) -> BackendError:
        status = response.status_code
        message = _status_message(response)
        verb, resource, group = _rbac_of(method, path)
        rule = f'{{apiGroups: ["{group}"], resources: ["{resource}"], verbs: ["{verb}"]}}'
        if status == 403:
            return BackendError(
                f"RBAC: the control plane may not {verb} {resource} in namespace "
                f"{self.namespace}; grant its service account a Role rule {rule} "
                f"(API server: {message})"
            )
        if status == 401:
            return BackendError(
                f"Kubernetes API refused the credentials (401 Unauthorized) to {verb} {resource}: "
                f"the token is missing, expired or invalid (API server: {message})"
            )
        return BackendError(f"Kubernetes API {method} {path} failed with {status}: {message}")


# -- reading API objects ---------------------------------------------------------------------


def _status_message(response: httpx.Response) -> str:
    """The ``message`` of a v1 Status body, or the body's start if it is not one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        reason = body.get("reason")
        return f"{reason}: {body['message']}" if reason else str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


def _rbac_of(method: str, path: str) -> tuple[str, str, str]:
    """The RBAC verb, resource (with subresource) and API group a request needs."""
    parts = path.strip("/").split("/")
    group = parts[1] if parts[0] == "apis" else ""
    try:
        rest = parts[parts.index("namespaces") + 2 :]
    except ValueError:
        rest = parts[-1:]
    resource = rest[0] if rest else "?"
    named = len(rest) > 1
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method, method.lower())
    return verb, resource, group


def _bot_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _pod_alive(pod: Mapping[str, Any]) -> bool:
    """The pod runs the bot, or is on its way to (scheduling, pulling, creating)."""
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return False
    state = _bot_status(pod).get("state") or {}
    if "terminated" in state:
        return False
    waiting = state.get("waiting")
    return not (waiting and waiting.get("reason") in _STUCK_REASONS)


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    # RFC 3339 UTC timestamps of one format compare as strings.
    return max(pods, key=lambda pod: pod["metadata"].get("creationTimestamp", ""), default=None)


def _exit_code(pod: Mapping[str, Any]) -> int | None:
    status = _bot_status(pod)
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated")
        if terminated and terminated.get("exitCode") is not None:
            return int(terminated["exitCode"])
    return None


def _reason(part: Mapping[str, Any]) -> str | None:
    reason, message = part.get("reason"), part.get("message")
    if reason and message:
        return f"{reason}: {message}"
    return reason or message or None


def _pod_detail(pod: Mapping[str, Any]) -> str | None:
    """What is wrong with the pod, if anything: its container's waiting or terminated reason,
    its own failure (evicted), or why it is not scheduled."""
    pod_status = pod.get("status", {})
    bot = _bot_status(pod)
    state = bot.get("state") or {}
    if state.get("waiting"):
        detail = _reason(state["waiting"])
        last = (bot.get("lastState") or {}).get("terminated")
        if last and detail:
            detail += (
                f" (last run: {last.get('reason', 'ended')}, exit code {last.get('exitCode')})"
            )
        return detail
    if state.get("terminated"):
        terminated = state["terminated"]
        return f"{terminated.get('reason', 'Terminated')}, exit code {terminated.get('exitCode')}"
    if pod_status.get("phase") == "Failed":
        return _reason(pod_status)
    for condition in pod_status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _reason(condition)
    return None


def _deployment_problem(deployment: Mapping[str, Any]) -> str | None:
    """Why a Deployment that wants a pod has none: its ReplicaFailure condition (a quota, a
    refused pod security level) or a stalled rollout."""
    for condition in deployment.get("status", {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return _reason(condition)
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return _reason(condition)
    return None


def _epoch_ms(seconds: str, fraction: str | None, zone: str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp split into its parts."""
    whole = calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        whole -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    millis = int((fraction or "").ljust(3, "0")[:3])
    return whole * 1000 + millis
