import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook as StandardWebhook

from cocopilot.errors import InvalidRequest
from services.webhooks.signing import generate_secret, secret_key, sign

# The known-answer vector that the Standard Webhooks libraries test against
# (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP_S = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_known_answer() -> None:
    signature = sign(secret_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TIMESTAMP_S, VECTOR_BODY)

    assert signature == VECTOR_SIGNATURE


def test_sign_changes_with_every_signed_part() -> None:
    key = secret_key(VECTOR_SECRET)

    assert sign(key, "msg_other", VECTOR_TIMESTAMP_S, VECTOR_BODY) != VECTOR_SIGNATURE
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP_S + 1, VECTOR_BODY) != VECTOR_SIGNATURE
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP_S, b'{"test": 2432232315}') != VECTOR_SIGNATURE


def test_generated_secret_verifies_with_reference_library() -> None:
    secret = generate_secret()
    body = b'{"type":"worker.completed","timestamp":"2026-01-28T12:00:00.000Z","data":{}}'
    now_s = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now_s),
        "webhook-signature": sign(secret_key(secret), "msg_1", now_s, body),
    }

    payload = StandardWebhook(secret).verify(body, headers)

    assert payload["type"] == "worker.completed"


def test_generated_secret_has_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()

    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second


def test_secret_key_accepts_unpadded_base64() -> None:
    key = bytes(range(25))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")

    assert secret_key(unpadded) == key


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with whsec_"),
        ("whsec_not base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "decodes to 65 bytes"),
        ("whsec_", "decodes to 0 bytes"),
    ],
)
def test_secret_key_rejects_invalid_secret(secret: str, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        secret_key(secret)
