"""Who may call the server: an API key, signed JWTs, or both.

With ``--api-key`` (or ``MARTLET_API_KEY``) a request must carry ``Authorization: Bearer KEY``;
the key is compared in constant time (:func:`hmac.compare_digest`). With ``--jwt-secret``
(HS256/384/512) or ``--jwt-public-key FILE`` (RSA: RS/PS 256/384/512; EC: ES256/384/512 by
curve; Ed25519/Ed448: EdDSA) a bearer token may instead be a JWT, checked by PyJWT: its
signature, its ``exp`` (required) and ``nbf``, and its ``aud`` against ``--jwt-audience``
(a token naming an audience is refused when none is set). Either form is accepted when both
are configured.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

from martlet_serve.api_errors import ApiError

#: the shortest HMAC secret accepted (RFC 7518: a key at least as long as the hash)
MIN_SECRET_BYTES = 32
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Authenticator:
    """Checks the ``Authorization`` header of a request (:meth:`check`).

    Raises:
        ConfigError: a secret shorter than :data:`MIN_SECRET_BYTES`, both a secret and a
            public key, an audience without either, or a public key file that cannot be read
            or is of a kind JWTs are not signed with.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        jwt_secret: str | None = None,
        jwt_public_key: str | None = None,
        jwt_audience: str | None = None,
    ) -> None:
        if jwt_secret and jwt_public_key:
            raise ConfigError(
                "--jwt-secret and --jwt-public-key both say how tokens are signed",
                fix="pass one: --jwt-secret for HS256, --jwt-public-key FILE for RS256/ES256",
            )
        if jwt_audience and not (jwt_secret or jwt_public_key):
            raise ConfigError(
                "--jwt-audience needs --jwt-secret or --jwt-public-key",
                why="without one no JWT is accepted, so the audience would be ignored",
                fix="add --jwt-secret SECRET or --jwt-public-key FILE, or drop --jwt-audience",
            )
        if api_key is not None and not api_key.strip():
            raise ConfigError("--api-key is empty", fix="pass a key, or leave --api-key out")
        self.api_key = api_key
        self.audience = jwt_audience
        self._key: Any = None
        self._algorithms: list[str] = []
        if jwt_secret:
            if len(jwt_secret.encode("utf-8")) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"--jwt-secret is shorter than {MIN_SECRET_BYTES} bytes",
                    why="a short HMAC secret can be guessed offline from any token it signed",
                    fix="generate one: python -c 'import secrets; print(secrets.token_hex(32))'",
                )
            self._key, self._algorithms = jwt_secret, ["HS256", "HS384", "HS512"]
        elif jwt_public_key:
            self._key, self._algorithms = _public_key(jwt_public_key)

    @property
    def enabled(self) -> bool:
        """Whether requests must authenticate at all."""
        return bool(self.api_key or self._key is not None)

    @property
    def uses_jwt(self) -> bool:
        return self._key is not None

    def check(self, authorization: str | None) -> None:
        """Accept the request whose ``Authorization`` header is ``authorization``.

        Raises:
            ApiError: 401, saying what is wrong (missing, not a bearer token, a wrong key, or
                why the JWT was refused).
        """
        if not self.enabled:
            return
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if not authorization:
            raise self._refused("no Authorization header: send 'Authorization: Bearer TOKEN'")
        if scheme.lower() != "bearer" or not token:
            raise self._refused("the Authorization header is not 'Bearer TOKEN'")
        if self.api_key and hmac.compare_digest(token.encode(), self.api_key.encode()):
            return
        if not self.uses_jwt:
            raise self._refused("the API key is not valid", code="invalid_api_key")
        reason = self._jwt_error(token)
        if reason is None:
            return
        if self.api_key and token.count(".") != 2:
            raise self._refused("the bearer token is neither the API key nor a JWT")
        raise self._refused(f"the JWT was refused: {reason}", code="invalid_token")

    def _jwt_error(self, token: str) -> str | None:
        """Why ``token`` is not accepted, or None when it is."""
        import jwt

        try:
            jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.audience,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            return "it has expired (exp)"
        except jwt.ImmatureSignatureError:
            return "it is not valid yet (nbf)"
        except jwt.InvalidAudienceError:
            if self.audience:
                return f"its audience (aud) is not {self.audience!r}"
            return "it names an audience (aud) and this server is configured with none"
        except jwt.MissingRequiredClaimError as exc:
            return f"it has no {exc.claim!r} claim (tokens must expire)"
        except jwt.InvalidSignatureError:
            return "its signature does not verify"
        except jwt.InvalidAlgorithmError:
            return f"it is not signed with {' or '.join(self._algorithms)}"
        except jwt.DecodeError as exc:
            return f"it is not a well-formed JWT ({exc})"
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    @staticmethod
    def _refused(message: str, code: str = "invalid_authorization") -> ApiError:
        return ApiError(401, message, code=code, headers=_CHALLENGE)


def _public_key(path: str) -> tuple[Any, list[str]]:
    """The key in the PEM file at ``path`` and the JWT algorithms that go with its kind."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    file = Path(path).expanduser()
    try:
        key = load_pem_public_key(file.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"cannot read --jwt-public-key {path}",
            why=exc.strerror or str(exc),
            fix="give the path of a PEM public key file",
        ) from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"--jwt-public-key {path} is not a PEM public key",
            why=str(exc),
            fix="give the PEM file of the public key (-----BEGIN PUBLIC KEY-----)",
        ) from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise ConfigError(
                f"--jwt-public-key {path} is an EC key on {key.curve.name}",
                why="JWTs are signed on P-256, P-384 or P-521 (ES256, ES384, ES512)",
                fix="give a key on one of those curves",
            )
        return key, [by_curve[key.curve.name]]
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key, ["EdDSA"]
    raise ConfigError(
        f"--jwt-public-key {path} is a {type(key).__name__}",
        why="JWTs are verified with RSA, EC or EdDSA public keys",
        fix="give an RSA, EC or Ed25519 public key",
    )
