"""Bot bundles: reproducible archives of a bot's source, its manifest and a sha256 digest.

A bundle is a gzip-compressed tar with fixed timestamps, owners and order, so the same source
always gives the same bytes and the same digest::

    manifest.json        what the bot is (see BundleManifest)
    src/<files>          the bot's module and the local modules it imports
    bot.pkl              (notebook bots only) the class, pickled by value with cloudpickle

:func:`build_bundle` refuses a broken bot before anything is uploaded (a syntax error in any
file, no bot class, a bad manifest). :func:`verify_bundle` checks a bundle without running any
of its code — what a server does on upload. :func:`load_bundle` is for the bot runtime only: it
verifies again, then imports the bot.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import platform
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import cloudpickle
import msgspec

from coyote_sdk._version import __version__
from coyote_sdk.bot import Bot
from coyote_sdk.loading import BotLoadError, load_bot_class
from coyote_sdk.signing import SignatureError, verify_signature

BUNDLE_FORMAT: Final = 1
MAX_BUNDLE_BYTES: Final = 50 * 1024 * 1024
"""Larger uploads are refused: a bot's source is kilobytes; data belongs elsewhere."""
MAX_FILES: Final = 500

Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
BundleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class BundleError(ValueError):
    """A bundle, or a bot to bundle, that is not acceptable; the message says why."""


class BundleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    sha256: Sha256
    size: int


class BundleManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a bundle holds. ``entry_point`` is ``src/<file>.py:<Class>`` for source bundles and
    ``bot.pkl:<Class>`` for pickled ones."""

    format: int = BUNDLE_FORMAT
    name: BundleName
    entry_point: str
    bot_class: str
    symbols: list[str]
    timeframe: str
    params_schema: dict[str, Any]
    requirements: list[str] = msgspec.field(default_factory=list)
    sdk_version: str
    python: str
    files: list[BundleFile]


class Bundle(msgspec.Struct, frozen=True):
    data: bytes
    manifest: BundleManifest
    digest: str
    """``sha256:<hex>`` of :attr:`data`."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- BUILDING -------------------------------------------------------------------------------


def build_bundle(
    path: str | Path,
    *,
    name: str | None = None,
    bot_class: str | None = None,
    requirements: Iterable[str] | None = None,
) -> Bundle:
    """Bundles the bot defined in ``path`` with the local modules it imports.

    Requirements are read from ``requirements.txt`` beside the bot unless given.

    Raises:
        BundleError: naming the file and line of a syntax error, a missing bot class, or an
            invalid name.
    """
    path = Path(path).resolve()
    root = path.parent
    files = _local_sources(path, root)
    for source in files:
        try:
            compile(source.read_bytes(), str(source), "exec")
        except SyntaxError as exc:
            raise BundleError(f"{source}:{exc.lineno}: syntax error: {exc.msg}") from exc
    try:
        cls = load_bot_class(path, bot_class)
    except BotLoadError as exc:
        raise BundleError(str(exc)) from exc
    if requirements is None:
        listed = root / "requirements.txt"
        requirements = _read_requirements(listed) if listed.exists() else []
    members = {f"src/{f.relative_to(root).as_posix()}": f.read_bytes() for f in files}
    manifest = _manifest(
        cls,
        name or _default_name(path),
        f"src/{path.relative_to(root).as_posix()}:{cls.__name__}",
        list(requirements),
        members,
    )
    return _pack(manifest, members)


def bundle(
    bot_class: type[Bot], *, name: str | None = None, requirements: Iterable[str] = ()
) -> Bundle:
    """Bundles a bot class defined anywhere, a notebook included, by pickling it by value.

    Example: ``coyote_sdk.bundle(MyBot).data`` is what ``push`` uploads; the class must be
    importable by the runtime's Python (standard library, coyote_sdk, or the requirements).
    """
    if not (isinstance(bot_class, type) and issubclass(bot_class, Bot)) or bot_class is Bot:
        raise BundleError(f"{bot_class!r} is not a Bot subclass")
    module = sys.modules.get(bot_class.__module__)
    if module is not None and bot_class.__module__ != "__main__":
        cloudpickle.register_pickle_by_value(module)
    try:
        pickled = cloudpickle.dumps(bot_class)
    finally:
        if module is not None and bot_class.__module__ != "__main__":
            cloudpickle.unregister_pickle_by_value(module)
    members = {"bot.pkl": pickled}
    manifest = _manifest(
        bot_class,
        name or bot_class.__name__.lower(),
        f"bot.pkl:{bot_class.__name__}",
        list(requirements),
        members,
    )
    return _pack(manifest, members)


def _manifest(
    cls: type[Bot], name: str, entry: str, requirements: list[str], members: dict[str, bytes]
) -> BundleManifest:
    try:
        return msgspec.convert(
            {
                "name": name,
                "entry_point": entry,
                "bot_class": cls.__name__,
                "symbols": list(cls.symbols),
                "timeframe": str(cls.timeframe),
                "params_schema": cls.params_schema(),
                "requirements": requirements,
                "sdk_version": __version__,
                "python": platform.python_version(),
                "files": [
                    {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                    for p, d in sorted(members.items())
                ],
            },
            BundleManifest,
        )
    except msgspec.ValidationError as exc:
        raise BundleError(
            f"invalid manifest: {exc} (names are lower case, 1-64 characters)"
        ) from exc


def _default_name(path: Path) -> str:
    # A project made by `coyote-sdk init` keeps its bot in bot.py: the folder names the bot.
    stem = path.parent.name if path.stem == "bot" else path.stem
    return re.sub(r"[^a-z0-9._-]", "-", stem.lower()).strip("-._") or "bot"


def _pack(manifest: BundleManifest, members: dict[str, bytes]) -> Bundle:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = {"manifest.json": msgspec.json.format(msgspec.json.encode(manifest)), **members}
        for member_path in sorted(entries):
            data = entries[member_path]
            info = tarfile.TarInfo(member_path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    # gzip with mtime 0 and no file name: the same tar always compresses to the same bytes.
    data = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    return Bundle(data=data, manifest=manifest, digest=digest_of(data))


def _local_sources(entry: Path, root: Path) -> list[Path]:
    """``entry`` and every module under ``root`` it imports, transitively."""
    seen: dict[Path, None] = {}
    queue = [entry]
    while queue:
        source = queue.pop()
        if source in seen:
            continue
        seen[source] = None
        try:
            tree = ast.parse(source.read_bytes(), str(source))
        except SyntaxError as exc:
            raise BundleError(f"{source}:{exc.lineno}: syntax error: {exc.msg}") from exc
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                base = source.parent
                for _ in range(node.level - 1):
                    base = base.parent
                prefix = ".".join(base.relative_to(root).parts) if base != root else ""
                module = ".".join(p for p in (prefix, node.module or "") if p)
                names = [module] + [f"{module}.{a.name}".lstrip(".") for a in node.names]
            for name in names:
                queue.extend(_module_files(name, root))
    return sorted(seen)


def _module_files(name: str, root: Path) -> list[Path]:
    parts = name.split(".")
    found = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        if base.with_suffix(".py").is_file():
            found.append(base.with_suffix(".py"))
        elif (base / "__init__.py").is_file():
            found.append(base / "__init__.py")
        else:
            break
    return found


def _read_requirements(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


# -- CHECKING AND LOADING -------------------------------------------------------------------


def verify_bundle(data: bytes, *, expected_digest: str | None = None) -> BundleManifest:
    """Checks a bundle without executing any of it: size, digest, archive layout, manifest,
    and every file against the manifest's sha256.

    Raises:
        BundleError: saying what is wrong.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is {len(data)} bytes; the limit is {MAX_BUNDLE_BYTES}")
    if expected_digest is not None and digest_of(data) != expected_digest:
        raise BundleError(
            f"digest mismatch: the bundle is {digest_of(data)}, expected {expected_digest}"
        )
    members = _read_members(data)
    if "manifest.json" not in members:
        raise BundleError("bundle has no manifest.json")
    try:
        manifest = msgspec.json.decode(members.pop("manifest.json"), type=BundleManifest)
    except msgspec.DecodeError as exc:
        raise BundleError(f"manifest.json is invalid: {exc}") from exc
    if manifest.format != BUNDLE_FORMAT:
        raise BundleError(f"bundle format {manifest.format} is not supported")
    listed = {f.path: f for f in manifest.files}
    if set(listed) != set(members):
        extra, missing = sorted(set(members) - set(listed)), sorted(set(listed) - set(members))
        raise BundleError(f"files differ from the manifest: extra {extra}, missing {missing}")
    for member_path, content in members.items():
        if hashlib.sha256(content).hexdigest() != listed[member_path].sha256:
            raise BundleError(f"{member_path} does not match its sha256 in the manifest")
    entry_file, _, class_name = manifest.entry_point.partition(":")
    if entry_file not in members or not class_name or class_name != manifest.bot_class:
        raise BundleError(f"entry point {manifest.entry_point!r} names no file of the bundle")
    return manifest


def _read_members(data: bytes) -> dict[str, bytes]:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"not a gzip-compressed tar archive: {exc}") from exc
    members: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            entries = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"the archive is damaged: {exc}") from exc
        if len(entries) > MAX_FILES + 1:
            raise BundleError(f"bundle holds {len(entries)} entries; the limit is {MAX_FILES}")
        for entry in entries:
            name = entry.name
            if not entry.isfile():
                raise BundleError(f"{name}: only regular files may be bundled")
            if name.startswith("/") or ".." in Path(name).parts or "\\" in name:
                raise BundleError(f"{name}: paths must stay inside the bundle")
            total += entry.size
            if total > MAX_BUNDLE_BYTES:
                raise BundleError("bundle unpacks to more than the size limit")
            extracted = tar.extractfile(entry)
            assert extracted is not None
            members[name] = extracted.read()
    return members


def load_bundle(
    data: bytes,
    *,
    expected_digest: str | None = None,
    signature: str | None = None,
    trusted_keys: Sequence[str] = (),
    require_signature: bool = False,
) -> type[Bot]:
    """Verifies a bundle and imports its bot class. For the bot runtime only: this runs the
    bundle's code.

    Args:
        expected_digest: The digest the bundle must have.
        signature: The organisation's signature of the digest (:mod:`coyote_sdk.signing`).
        trusted_keys: Public keys; when given, the bundle loads only with a ``signature`` by
            one of them.
        require_signature: Refuse the bundle without a valid signature even when no key is
            trusted (an organisation whose keys are all revoked).

    Raises:
        BundleError: A bad bundle, another digest, or a missing or wrong signature; no code
            of the bundle has run then.
    """
    manifest = verify_bundle(data, expected_digest=expected_digest)
    if trusted_keys or require_signature:
        if signature is None:
            raise BundleError("the bundle is not signed, and signed bundles are required")
        try:
            verify_signature(digest_of(data), signature, trusted_keys)
        except SignatureError as exc:
            raise BundleError(f"bad signature: {exc}") from exc
    members = _read_members(data)
    entry_file, _, class_name = manifest.entry_point.partition(":")
    if entry_file == "bot.pkl":
        cls = cloudpickle.loads(members["bot.pkl"])
        if not (isinstance(cls, type) and issubclass(cls, Bot)):
            raise BundleError("bot.pkl does not hold a Bot subclass")
        return cls
    folder = Path(tempfile.mkdtemp(prefix="coyote-bundle-"))
    for member_path, content in members.items():
        target = folder / member_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    try:
        return load_bot_class(folder / entry_file, class_name)
    except BotLoadError as exc:
        raise BundleError(str(exc)) from exc
