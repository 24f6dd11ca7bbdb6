"""Secrets: `${ENV_VAR}` in datasource fields, and `encrypted_password` (SPEC §7).

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
from typing import TYPE_CHECKING

from mflow.errors import ConfigError

if TYPE_CHECKING:
    from mflow.config import Datasources

PASSKEY_ENV = "MFLOW_PASSKEY"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _key(passkey: str) -> bytes:
    return hashlib.sha512(passkey.encode("utf-8")).digest()[:32]


def encrypt(plaintext: str, passkey: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(_key(passkey)).encrypt(nonce, plaintext.encode("utf-8"), None)
    return base64.b64encode(nonce + sealed).decode("ascii")


def decrypt(ciphertext: str, passkey: str) -> str:
    """Raises ValueError when the text is not ours or the passkey is wrong."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.b64decode(ciphertext.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) < 12 + 16:
        raise ValueError("too short to be AES-GCM ciphertext")
    try:
        return AESGCM(_key(passkey)).decrypt(raw[:12], raw[12:], None).decode("utf-8")
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


# The password part of a URL's authority: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"://[^/@:]*:([^/@]*)@")


def secret_variables(datasources: Datasources) -> set[str]:
    """The environment variables that hold a connection's password, secret or token.

    These are kept out of every task's environment (SPEC §2), as is the passkey; a child run
    gets them back, since it opens the same connections.
    """
    from mflow.config import SECRET_FIELDS

    names: set[str] = set()
    for connection in datasources.connections.values():
        for key, value in connection.fields.items():
            if not isinstance(value, str) or "${" not in value:
                continue
            if key in SECRET_FIELDS:
                names.update(_VAR.findall(value))
            elif key == "url":
                for password in _URL_PASSWORD.findall(value):
                    names.update(_VAR.findall(password))
    return names
