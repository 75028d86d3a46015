"""JupyterHub add-ons for the Ansible-deployed hub.

Modules:
    settings: load, validate and apply the one JSON settings file.
    auth: HashedPasswordAuthenticator (scrypt password hashes).
    passwords: hash and verify passwords.
    api: a small client for the hub's REST API.
    cli: the ``hub-app`` operator command.
"""

__version__ = "0.1.0"
