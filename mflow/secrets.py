"""Secrets (SPEC §7): what a secret looks like, hiding it, `${ENV_VAR}`s, `encrypted_password`.

The one place that knows what a secret is: a field named `password`, `encrypted_password`,
`secret` or `token` (`SECRET_FIELDS`), any name that says so (`is_secret_name`), the password
of a URL in any form (`user:PASSWORD@` or a `password`-like query parameter, for every scheme:
`mask_url`), and the `${VAR}`s used in those places (`secret_variables`). Every printer, error
message, log and task environment goes through these; `Masker` also hides the values mflow
knows (a connection's password, a token) in text it writes itself.

Ciphertext is compatible with OpenDataFlow's Cryptor: AES-256-GCM with key = the first 32
bytes of SHA-512(passkey), a random 12-byte nonce prepended to ciphertext+tag, base64.
The passkey comes from `MFLOW_PASSKEY` (or a hidden prompt in `mflow crypt`), never from argv.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Mapping

from mflow.errors import ConfigError

PASSKEY_ENV = "MFLOW_PASSKEY"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Fields of a datasource whose value is a secret.
SECRET_FIELDS = ("password", "encrypted_password", "secret", "token")
# Any other name whose value is a secret: a field, an env entry's key, a query parameter.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|api[_-]?key|passkey", re.IGNORECASE)
# scheme://user:PASSWORD@host... (a password may hold '/', ':' or '@': up to the last '@'
# of the URL; too much hidden is better than a password shown)
_USERINFO = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)(?P<secret>\S*)(?P<tail>@)", re.IGNORECASE
)
# ...?password=SECRET&... (and sslpassword, passwd, pwd, token, secret, api_key...)
_QUERY = re.compile(
    r"(?P<head>[?&;](?:[^=&\s]*?)(?:pass|pwd|secret|token|credential|api[_-]?key)[^=&\s]*=)"
    r"(?P<secret>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def is_secret_name(name: object) -> bool:
    """A field, key or parameter name whose value is a secret."""
    return isinstance(name, str) and (name in SECRET_FIELDS or bool(_SECRET_NAME.search(name)))


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***: `user:***@` and
    `?password=***` (any scheme: postgresql+psycopg, oracle+oracledb, sqlite, zk, https...)."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    return _QUERY.sub(lambda m: f"{m['head']}***" if m["secret"] else m[0], text)


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL: its password and its password-like query values."""
    found = [m["secret"] for m in _USERINFO.finditer(url) if m["secret"]]
    found += [m["secret"] for m in _QUERY.finditer(url) if m["secret"]]
    return found


class Masker:
    """Hides secrets in text mflow writes itself (SQL rows, DBMS_OUTPUT, TigerGraph answers,
    errors): every URL's password, and each secret value it was given."""

    def __init__(self, *secrets: str | None) -> None:
        self.secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and secret not in self.secrets:
            self.secrets.append(secret)
            self.secrets.sort(key=len, reverse=True)  # a longer one first: no half-masking

    def __call__(self, text: str) -> str:
        text = mask_url(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _key(passkey: str) -> bytes:
    return hashlib.sha512(passkey.encode("utf-8")).digest()[:32]


# The stronger format (`mflow crypt encrypt`, the default): a random 16-byte salt and scrypt
# (N=2^15, r=8, p=1) make the key, behind a version prefix that base64 cannot produce ('$'),
# so both formats decrypt through `decrypt`. The seed's format (key = SHA-512(passkey)[:32],
# no salt) stays readable and can still be made (`--kdf sha512`) for OpenDataFlow's Cryptor.
SCRYPT_PREFIX = "$scrypt1$"
KDFS = ("scrypt", "sha512")


def _scrypt_key(passkey: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passkey.encode("utf-8"))


def encrypt(plaintext: str, passkey: str, kdf: str = "scrypt") -> str:
    """An encrypted_password: AES-256-GCM, the key from scrypt (default) or the seed's SHA-512."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if kdf not in KDFS:
        raise ValueError(f"unknown key derivation '{kdf}' (known: {', '.join(KDFS)})")
    nonce = os.urandom(12)
    if kdf == "sha512":
        sealed = AESGCM(_key(passkey)).encrypt(nonce, plaintext.encode("utf-8"), None)
        return base64.b64encode(nonce + sealed).decode("ascii")
    salt = os.urandom(16)
    sealed = AESGCM(_scrypt_key(passkey, salt)).encrypt(nonce, plaintext.encode("utf-8"), None)
    return SCRYPT_PREFIX + base64.b64encode(salt + nonce + sealed).decode("ascii")


def decrypt(ciphertext: str, passkey: str) -> str:
    """Either format. Raises ValueError when the text is not ours or the passkey is wrong."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    text = ciphertext.strip()
    scrypt = text.startswith(SCRYPT_PREFIX)
    try:
        raw = base64.b64decode(text.removeprefix(SCRYPT_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    salt = b""
    if scrypt:
        salt, raw = raw[:16], raw[16:]
    if len(raw) < 12 + 16 or (scrypt and len(salt) < 16):
        raise ValueError("too short to be AES-GCM ciphertext")
    key = _scrypt_key(passkey, salt) if scrypt else _key(passkey)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode("utf-8")
    except InvalidTag:
        raise ValueError("wrong passkey, or the ciphertext was altered") from None


def expand(value: str, *, what: str) -> str:
    """Replace ${VAR} from the environment; an unset variable is an error naming `what`."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"environment variable {name} is not set (needed by {what})", json_path=""
            )
        return os.environ[name]

    return _VAR.sub(sub, value) if "${" in value else value


def reveal_password(fields: dict[str, object] | object, *, what: str) -> str | None:
    """The clear password of a connection: `password` (with ${VAR}) or `encrypted_password`."""
    get = fields.get  # type: ignore[union-attr]
    if get("encrypted_password"):
        passkey = os.environ.get(PASSKEY_ENV)
        if not passkey:
            raise ConfigError(
                f"{what} has an encrypted_password but {PASSKEY_ENV} is not set", json_path=""
            )
        try:
            return decrypt(str(get("encrypted_password")), passkey)
        except ValueError as exc:
            raise ConfigError(
                f"cannot decrypt the password of {what}: {exc}", json_path=""
            ) from None
    password = get("password")
    return expand(str(password), what=what) if password is not None else None


def secret_variables(connections: Iterable[Mapping[str, object]]) -> set[str]:
    """The environment variables that hold a connection's password, secret or token: used in
    a secret field, in a URL's password or in a password-like query parameter (`connections`:
    each connection's fields, `Datasources.fields()`).

    These are kept out of every task's environment (SPEC §2), as is the passkey; a child run
    gets them back, since it opens the same connections.
    """
    names: set[str] = set()
    for fields in connections:
        for key, value in fields.items():
            if not isinstance(value, str) or "${" not in value:
                continue
            if is_secret_name(key):
                names.update(_VAR.findall(value))
            elif key == "url":
                for secret in url_secrets(value):
                    names.update(_VAR.findall(secret))
    return names
