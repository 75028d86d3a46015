"""A small, synchronous client for the JupyterHub REST API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import requests

__all__ = [
    "HubAPIError",
    "HubClient",
    "HubConnectionError",
    "ServerWaitError",
    "routes_without_server",
    "server_state",
    "servers_without_route",
]

# Asking for JupyterHub's paginated form is the only way to learn whether more users
# follow; the plain form silently stops at the hub's page size.
_PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"


class HubAPIError(Exception):
    """The hub answered with an HTTP error.

    Attributes:
        status: The HTTP status code.
        reason: The HTTP reason phrase.
        message: The ``message`` field of the hub's JSON error body, if any.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class HubConnectionError(Exception):
    """The hub could not be reached, or what answered did not speak its API."""


class ServerWaitError(Exception):
    """A server did not reach the wanted state.

    Attributes:
        state: The last state seen (``ready``, ``pending``, ``stopped``).
    """

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


def server_state(user_model: dict[str, Any]) -> str:
    """Summarise a user's default server from a user model.

    Args:
        user_model: A user model from ``GET /users`` or ``GET /users/{name}``, read
            with the ``read:servers`` scope.

    Returns:
        ``ready``, ``pending`` (starting or stopping) or ``stopped``.
    """
    server = (user_model.get("servers") or {}).get("")
    if server is None:
        # Without read:servers the `servers` key is absent; `pending` still tells.
        return "pending" if user_model.get("pending") else "stopped"
    if server.get("pending"):
        return "pending"
    if server.get("ready"):
        return "ready"
    return "stopped"


def servers_without_route(
    routes: dict[str, dict[str, Any]], users: Iterable[dict[str, Any]]
) -> list[str]:
    """The URL paths of ready servers that have no route.

    Args:
        routes: The routing table from ``GET /proxy``, keyed by route path.
        users: User models read with the ``read:servers`` scope.

    Returns:
        The servers' URL paths (``/user/alice/``), sorted.
    """
    return sorted(
        server["url"]
        for user in users
        for server in (user.get("servers") or {}).values()
        if server.get("ready") and server.get("url") and server["url"] not in routes
    )


def routes_without_server(
    routes: dict[str, dict[str, Any]], users: Iterable[dict[str, Any]]
) -> list[str]:
    """The user routes that lead to no server, ready or pending.

    A route is a user's when the hub marked it so (``data.user``), as JupyterHub's
    own route check decides; the hub's route (``/``) and services' are not. A
    pending server's route is left alone, as the hub does: it may be on its way
    in or out.

    Args:
        routes: The routing table from ``GET /proxy``, keyed by route path.
        users: User models read with the ``read:servers`` scope (which lists only
            servers that are ready or pending).

    Returns:
        The route paths, sorted.
    """
    served = {
        server["url"]
        for user in users
        for server in (user.get("servers") or {}).values()
        if (server.get("ready") or server.get("pending")) and server.get("url")
    }
    return sorted(
        spec
        for spec, route in routes.items()
        if "user" in (route.get("data") or {}) and spec not in served
    )


class HubClient:
    """Talk to a hub's REST API with a token.

    Args:
        api_url: The API root, such as ``http://127.0.0.1:8081/hub/api``.
        token: An API token, sent in the ``Authorization`` header only.
        timeout: Seconds to wait for each HTTP response.
    """

    def __init__(self, api_url: str, token: str, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"token {token}"
        # No proxies from the environment: the hub's API is on loopback, and an
        # HTTP(S)_PROXY meant for the internet must not see the token.
        self._session.trust_env = False

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._session.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request to the API.

        Args:
            method: The HTTP method.
            path: The path below the API root, starting with ``/``.
            **kwargs: Passed on to :meth:`requests.Session.request`.

        Returns:
            The response, whose status is below 400.

        Raises:
            HubConnectionError: If the hub cannot be reached.
            HubAPIError: If the hub answers with an error status.
        """
        url = self.api_url + path
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self._session.request(method, url, **kwargs)
        except requests.ConnectionError as e:
            raise HubConnectionError(
                f"cannot connect to the hub at {url}: {_root_cause(e)}; is the hub running, "
                "and is hub.bind_url (or --url) right?"
            ) from None
        except requests.Timeout:
            raise HubConnectionError(
                f"no answer from the hub at {url} within {self.timeout:g} s"
            ) from None
        except requests.RequestException as e:
            raise HubConnectionError(f"request to {url} failed: {e}") from None
        if response.status_code >= 400:
            raise HubAPIError(response.status_code, response.reason, _error_message(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise HubConnectionError(
                f"{response.url} answered with something that is not JSON; is it the hub's API?"
            ) from None

    def version(self) -> str:
        """Return the hub's JupyterHub version (``GET /``, which needs no token)."""
        about = self._json("GET", "/")
        if not isinstance(about, dict) or "version" not in about:
            raise HubConnectionError(
                f"{self.api_url}/ answered without a version; is it the hub's API?"
            )
        return str(about["version"])

    def whoami(self) -> dict[str, Any]:
        """Return the model of the token's owner (``GET /user``)."""
        return self._json("GET", "/user")

    def iter_users(self) -> Iterator[dict[str, Any]]:
        """Yield every user model (``GET /users``), following pagination."""
        offset = 0
        while True:
            page = self._json(
                "GET",
                "/users",
                params={"offset": offset},
                headers={"Accept": _PAGINATION_MEDIA_TYPE},
            )
            if isinstance(page, list):
                # A hub that ignores the pagination media type answers with a list.
                yield from page
                return
            yield from page["items"]
            following = page.get("_pagination", {}).get("next")
            if not following:
                return
            offset = following["offset"]

    def get_user(self, name: str) -> dict[str, Any]:
        """Return one user's model (``GET /users/{name}``)."""
        return self._json("GET", f"/users/{_quote(name)}")

    def delete_user(self, name: str) -> None:
        """Delete a user from the hub (``DELETE /users/{name}``).

        JupyterHub deletes the user's API tokens, OAuth grants and server records
        with the user. It stops a running server first, but answers 400 while a
        stop is still under way; stop the server and wait for it before calling.

        Raises:
            HubAPIError: 404 if the hub has no such user.
        """
        self.request("DELETE", f"/users/{_quote(name)}")

    def start_server(self, name: str) -> int:
        """Ask the hub to start a user's default server.

        Returns:
            201 if the server is already up, 202 if it is still starting.
        """
        return self.request("POST", f"/users/{_quote(name)}/server").status_code

    def stop_server(self, name: str) -> int:
        """Ask the hub to stop a user's default server.

        Returns:
            204 if the server is stopped, 202 if it is still stopping.
        """
        return self.request("DELETE", f"/users/{_quote(name)}/server").status_code

    def iter_progress(self, name: str, timeout: float) -> Iterator[dict[str, Any]]:
        """The spawn page's progress events of a user's pending default server.

        Reads ``GET /users/{name}/server/progress`` (an event stream) until the
        hub closes it: after an event with ``ready`` or ``failed``, or at once
        when no spawn is pending.

        Args:
            name: The username.
            timeout: Seconds to wait for each next event.

        Yields:
            Each event, like ``{"progress": 10, "message": "..."}``.
        """
        response = self.request(
            "GET",
            f"/users/{_quote(name)}/server/progress",
            stream=True,
            timeout=(self.timeout, timeout),
            headers={"Accept": "text/event-stream"},
        )
        with response:
            try:
                for line in response.iter_lines(decode_unicode=True):
                    if line and line.startswith("data:"):
                        yield json.loads(line[len("data:") :])
            except requests.RequestException as e:
                raise HubConnectionError(
                    f"the progress of {name}'s server stopped coming: {_root_cause(e)}"
                ) from None

    def wait_for_server(
        self, name: str, want: str, timeout: float, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll a user's model until the default server is in the wanted state.

        Args:
            name: The username.
            want: ``ready`` or ``stopped``.
            timeout: Seconds to wait in total.
            interval: Seconds between polls.

        Returns:
            The user model showing the wanted state.

        Raises:
            ServerWaitError: If the server settles in another state (a start that
                ended ``stopped`` has failed) or the timeout passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            model = self.get_user(name)
            state = server_state(model)
            if state == want:
                return model
            if state != "pending":
                raise ServerWaitError(
                    f"server of {name} is {state}, not {want}; see the hub log for why", state
                )
            if time.monotonic() >= deadline:
                raise ServerWaitError(
                    f"server of {name} is still {state} after {timeout:g} s", state
                )
            time.sleep(interval)

    def get_routes(self) -> dict[str, dict[str, Any]]:
        """Return the proxy's routing table as the hub sees it (``GET /proxy``)."""
        return self._json("GET", "/proxy")

    def sync_routes(self) -> None:
        """Have the hub add every missing route to the proxy now (``POST /proxy``).

        The hub otherwise does this only at its periodic check (every 5 minutes),
        so a proxy that restarted with an empty table would send users to the hub.
        """
        self.request("POST", "/proxy")

    def unrouted_servers(self, routes: dict[str, dict[str, Any]]) -> list[str]:
        """Return the URL paths of ready servers that have no route in ``routes``."""
        return servers_without_route(routes, self.iter_users())

    def create_token(
        self,
        name: str,
        *,
        note: str | None = None,
        expires_in: int | None = None,
        scopes: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create an API token owned by a user (``POST /users/{name}/tokens``).

        Args:
            name: The user who will own the token.
            note: A note shown in the user's token list.
            expires_in: Lifetime in seconds; None for the hub's default.
            scopes: Scopes to limit the token to; None for all of the user's own.

        Returns:
            The token model; the token itself is in ``token``.
        """
        body: dict[str, Any] = {}
        if note is not None:
            body["note"] = note
        if expires_in is not None:
            body["expires_in"] = expires_in
        if scopes:
            body["scopes"] = scopes
        return self._json("POST", f"/users/{_quote(name)}/tokens", json=body)


def _quote(name: str) -> str:
    return quote(name, safe="")


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, requests.JSONDecodeError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text.strip()[:200] or "(no message)"


def _root_cause(error: BaseException) -> str:
    # requests wraps urllib3 wraps the socket error; the innermost says it best
    # ("Connection refused").
    while error.__context__ is not None or error.__cause__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error) or type(error).__name__
