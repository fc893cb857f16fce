"""Signing secrets and signatures of the Standard Webhooks specification (version 1.0.0).

A secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes; the HMAC key is those
bytes. A signature is ``v1,`` followed by the base64 of HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}``, so any Standard Webhooks library can verify it.
"""

import base64
import binascii
import hashlib
import hmac
import secrets

from cocopilot.errors import InvalidRequest

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a password)
GENERATED_SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret, or raise InvalidRequest naming the format."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    if encoded == secret:
        raise _invalid_secret("it does not start with whsec_")
    try:
        # Unpadded base64 is accepted, as the specification's libraries accept it.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise _invalid_secret("the part after whsec_ is not base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise _invalid_secret(f"it decodes to {len(key)} bytes")
    return key


def _invalid_secret(problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid secret: {problem}; use whsec_ followed by the base64 of "
        f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes, or omit it to get one"
    )


def sign(key: bytes, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one attempt."""
    signed = f"{webhook_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
