"""Bundle signatures: keys, signing and checking, and a runtime that refuses an unsigned or
wrongly signed bundle before any of its code runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from coyote_sdk.bundles import BundleError, build_bundle, load_bundle
from coyote_sdk.signing import (
    SignatureError,
    key_id,
    new_private_key,
    public_key_of,
    sign_digest,
    verify_signature,
)

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


def test_a_signature_verifies_against_its_key_and_names_it() -> None:
    private = new_private_key()
    public = public_key_of(private)

    signature = sign_digest(private, DIGEST)

    assert verify_signature(DIGEST, signature, [public_key_of(new_private_key()), public]) == (
        key_id(public)
    )


def test_a_signature_of_another_digest_is_refused() -> None:
    private = new_private_key()
    signature = sign_digest(private, DIGEST)

    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("sha256:" + "cd" * 32, signature, [public_key_of(private)])


def test_a_signature_by_an_untrusted_key_is_refused() -> None:
    signature = sign_digest(new_private_key(), DIGEST)

    with pytest.raises(SignatureError, match="not among the trusted keys"):
        verify_signature(DIGEST, signature, [public_key_of(new_private_key())])


def test_a_forged_signature_under_a_trusted_key_id_is_refused() -> None:
    trusted = new_private_key()
    forged = sign_digest(new_private_key(), DIGEST).split(":")
    forged[1] = key_id(public_key_of(trusted))

    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(DIGEST, ":".join(forged), [public_key_of(trusted)])


@pytest.mark.parametrize(
    "text", ["", "ed25519:", "rsa:abc:def", "ed25519:0011:not base64!", "ed25519:a:b:c"]
)
def test_malformed_signatures_are_refused(text: str) -> None:
    with pytest.raises(SignatureError):
        verify_signature(DIGEST, text, [public_key_of(new_private_key())])


def test_malformed_keys_are_refused() -> None:
    with pytest.raises(SignatureError):
        key_id("ed25519:AAAA")
    with pytest.raises(SignatureError):
        public_key_of(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def _canary_bundle(tmp_path: Path) -> tuple[bytes, str, Path]:
    canary = tmp_path / "canary"
    source = tmp_path / "src" / "signed.py"
    source.parent.mkdir()
    source.write_text(
        "from pathlib import Path\n"
        "from coyote_sdk import Bot\n"
        f"Path({str(canary)!r}).write_text('ran')\n"
        "class Signed(Bot):\n"
        "    symbols = ['GOOG']\n"
        "    timeframe = '1m'\n"
    )
    built = build_bundle(source)
    canary.unlink()
    return built.data, built.digest, canary


def test_the_runtime_loads_a_bundle_only_with_a_signature_by_a_trusted_key(
    tmp_path: Path,
) -> None:
    data, digest, canary = _canary_bundle(tmp_path)
    private = new_private_key()
    trusted = [public_key_of(private)]

    with pytest.raises(BundleError, match="not signed"):
        load_bundle(data, expected_digest=digest, trusted_keys=trusted)
    with pytest.raises(BundleError, match="bad signature"):
        load_bundle(
            data,
            expected_digest=digest,
            signature=sign_digest(new_private_key(), digest),
            trusted_keys=trusted,
        )
    assert not canary.exists()  # refused before any of its code ran

    cls = load_bundle(
        data, expected_digest=digest, signature=sign_digest(private, digest), trusted_keys=trusted
    )

    assert cls.__name__ == "Signed"
    assert canary.exists()
