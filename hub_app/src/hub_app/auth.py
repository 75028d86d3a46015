"""A JupyterHub authenticator that checks passwords against salted scrypt hashes."""

from __future__ import annotations

import asyncio
import functools
import secrets

from jupyterhub.auth import Authenticator
from traitlets import Dict, Unicode, validate

from .passwords import check_encoded_hash, hash_password, verify_password

__all__ = ["HashedPasswordAuthenticator"]


@functools.cache
def _dummy_hash() -> str:
    # Built lazily with the current default cost, so a login for an unknown user
    # costs the same scrypt run as one for a known user. Nobody knows the password
    # behind it, and a match would be ignored anyway.
    return hash_password(secrets.token_urlsafe(32))


class HashedPasswordAuthenticator(Authenticator):
    """Log users in with passwords checked against per-user scrypt hashes.

    Who may log in at all is decided by JupyterHub's own ``allowed_users``,
    ``admin_users`` and ``allow_all``; this class only answers whether the password
    is right.
    """

    password_hashes = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""
        Map of username to scrypt password hash.

        Create a hash with `hub-app hash-password`. A hash looks like
        `scrypt$ln=15,r=8,p=1$<salt>$<key>`. A user without an entry cannot log in.
        """,
    ).tag(config=True)

    @validate("password_hashes")
    def _validate_password_hashes(self, proposal):
        hashes = proposal["value"]
        for username, encoded in hashes.items():
            try:
                check_encoded_hash(encoded)
            except ValueError as e:
                raise ValueError(
                    f"HashedPasswordAuthenticator.password_hashes[{username}]: {e}"
                ) from None
        return hashes

    async def authenticate(self, handler, data):
        """Check a username and password against the configured hashes.

        Args:
            handler: The login handler (unused; may be None in tests).
            data: The login form, with ``username`` and ``password``.

        Returns:
            The username if the password matches the user's hash, otherwise None.
        """
        username = data.get("username") or ""
        password = data.get("password") or ""
        if not username or not password:
            # Refused before any lookup, so this path says nothing about which
            # usernames exist.
            return None
        # The hashes are keyed by the normalized name, the same name that
        # allowed_users and admin_users hold.
        username = self.normalize_username(username)
        encoded = self.password_hashes.get(username)
        known = encoded is not None
        # scrypt runs for unknown users too, so response time does not tell an
        # attacker which usernames exist; it runs in a thread because ~0.1 s of CPU
        # would otherwise stall every request the hub is serving.
        matched = await asyncio.to_thread(
            verify_password, password, encoded if known else _dummy_hash()
        )
        if known and matched:
            return username
        self.log.warning("Failed login for %r", username)
        return None
