"""Authentication with real keys and tokens (PyJWT, cryptography): RS256 and ES256 public
keys, HS256 secrets, API keys, and the reasons a request is refused."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from martlet.errors import ConfigError
from martlet_serve.api_errors import ApiError
from martlet_serve.auth import Authenticator


def pem(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signed(private_key, algorithm: str, **claims) -> str:
    payload = {"sub": "tester", "exp": int(time.time()) + 60, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, private_key, algorithm)


def refusal(auth: Authenticator, header: str | None) -> str:
    with pytest.raises(ApiError) as info:
        auth.check(header)
    assert info.value.status == 401 and info.value.headers == {"WWW-Authenticate": "Bearer"}
    return info.value.what


@pytest.mark.parametrize(
    ("make", "algorithm"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
def test_tokens_signed_for_a_public_key(tmp_path, make, algorithm):
    key, other = make(), make()
    file = tmp_path / "key.pem"
    file.write_bytes(pem(key.public_key()))
    auth = Authenticator(jwt_public_key=str(file), jwt_audience="api")
    auth.check(f"Bearer {signed(key, algorithm, aud='api')}")
    assert "signature" in refusal(auth, f"Bearer {signed(other, algorithm, aud='api')}")
    assert "expired" in refusal(auth, f"Bearer {signed(key, algorithm, aud='api', exp=1)}")
    assert "audience" in refusal(auth, f"Bearer {signed(key, algorithm, aud='web')}")
    assert "not a well-formed JWT" in refusal(auth, "Bearer not.a.jwt")


def test_a_token_for_another_algorithm_is_refused(tmp_path):
    """An HS256 token 'signed' with the public key's text (the classic confusion attack)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    file = tmp_path / "key.pem"
    file.write_bytes(pem(key.public_key()))
    auth = Authenticator(jwt_public_key=str(file))
    forged = jwt.encode({"exp": int(time.time()) + 60}, "x" * 64, algorithm="HS256")
    assert "not signed with RS256" in refusal(auth, f"Bearer {forged}")


def test_api_key_and_header_forms():
    auth = Authenticator("sk-one")
    auth.check("Bearer sk-one")
    auth.check("bearer   sk-one ")
    assert "no Authorization header" in refusal(auth, None)
    assert "not 'Bearer TOKEN'" in refusal(auth, "Basic c2stb25l")
    assert "not 'Bearer TOKEN'" in refusal(auth, "Bearer")
    assert refusal(auth, "Bearer sk-two") == "the API key is not valid"
    Authenticator().check(None)  # nothing configured: everyone may call


def test_key_and_secret_together_accept_either():
    secret = "s" * 40
    auth = Authenticator("sk-one", jwt_secret=secret)
    auth.check("Bearer sk-one")
    auth.check(f"Bearer {signed(secret, 'HS256')}")
    assert "neither the API key nor a JWT" in refusal(auth, "Bearer sk-two")
    assert "'exp'" in refusal(auth, f"Bearer {signed(secret, 'HS256', exp=None)}")
    later = signed(secret, "HS256", nbf=int(time.time()) + 600)
    assert "not valid yet" in refusal(auth, f"Bearer {later}")
    with_aud = signed(secret, "HS256", aud="api")
    assert "configured with none" in refusal(auth, f"Bearer {with_aud}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jwt_secret": "short"}, "shorter than 32 bytes"),
        ({"jwt_secret": "s" * 40, "jwt_public_key": "k.pem"}, "both say how tokens are signed"),
        ({"jwt_audience": "api"}, "needs --jwt-secret or --jwt-public-key"),
        ({"api_key": " "}, "--api-key is empty"),
        ({"jwt_public_key": "/nowhere/key.pem"}, "cannot read"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Authenticator(**kwargs)


def test_keys_jwts_are_not_signed_with_are_refused(tmp_path):
    file = tmp_path / "key.pem"
    file.write_bytes(pem(ec.generate_private_key(ec.SECP256K1()).public_key()))
    with pytest.raises(ConfigError, match="secp256k1"):
        Authenticator(jwt_public_key=str(file))
    file.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        Authenticator(jwt_public_key=str(file))
