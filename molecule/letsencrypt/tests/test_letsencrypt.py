"""A hub with a certificate from an ACME CA (Pebble), checked from outside.

Requests go from the test host to the hub container's address, with TLS
verified against Pebble's issuing root for the hub's name; the forced renewal
runs the real ``certbot renew`` inside the container. Measurements (longest
gap, sslyze's verdict) are printed to the log as "[letsencrypt] ..." lines.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hub_client import NameCheckingAdapter, Poller, podman_address

HUB_CONTAINER = "le-hub-debian12"
HUB_NAME = "hub.le.test"
HUB_APP = "/opt/jupyterhub/venv/bin/hub-app"
TEST_USER = "alice"
SERVED_CERTIFICATE = "/etc/jupyterhub/tls/fullchain.pem"
FILES = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "letsencrypt"
PEBBLE_ROOT = FILES / "pebble-root.pem"
# The bound for "renewal loses no route".
MAX_GAP_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.2


def record(capsys: pytest.CaptureFixture, key: str, value: Any) -> None:
    """Print a measurement past pytest's capture (it shows in the CI log)."""
    with capsys.disabled():
        print(f"\n[letsencrypt] {key}: {json.dumps(value)}", flush=True)


@pytest.fixture(autouse=True)
def only_on_the_hub(request) -> None:
    """Host checks run on the hub; the Pebble container is only its ACME CA.

    (Molecule passes every platform as --hosts, which wins over a module's
    testinfra_hosts.)
    """
    if "host" in request.fixturenames:
        host = request.getfixturevalue("host")
        if host.backend.name != HUB_CONTAINER:
            pytest.skip("checked on the hub only")


def hub_address() -> str:
    return podman_address(HUB_CONTAINER)


def hub_url(path: str) -> str:
    return f"https://{hub_address()}{path}"


def client() -> requests.Session:
    """A client that trusts only Pebble's issuing root."""
    session = requests.Session()
    # Ignore REQUESTS_CA_BUNDLE and proxies from the environment: the former
    # would replace Pebble's root even though verify is set.
    session.trust_env = False
    session.verify = str(PEBBLE_ROOT)
    session.mount("https://", NameCheckingAdapter(HUB_NAME))
    return session


def served_certificate() -> ssl.SSLObject:
    """Handshake with the hub (verified for HUB_NAME against Pebble's root); return its cert."""
    context = ssl.create_default_context(cafile=str(PEBBLE_ROOT))
    with (
        socket.create_connection((hub_address(), 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HUB_NAME) as tls,
    ):
        return tls.getpeercert()


def hub_app(host, *args: str) -> str:
    return host.run_expect([0], " ".join([HUB_APP, *args])).stdout.strip()


@pytest.fixture(scope="module")
def running_server(host) -> str:
    """alice's server runs; return a token for her server's API."""
    if host.backend.name != HUB_CONTAINER:
        # Module-scoped: set up before the function-scoped only_on_the_hub.
        pytest.skip("checked on the hub only")
    started = hub_app(host, "server", "start", TEST_USER, "--wait", "--timeout", "180")
    assert started.endswith("ready")
    return hub_app(host, "token", "create", TEST_USER, "--note", "molecule-letsencrypt")


# --- issuance ------------------------------------------------------------------


def test_the_served_certificate_chains_to_pebbles_root(host):
    # The handshake itself verifies the chain to Pebble's root and the name.
    peer = served_certificate()
    issuer = dict(field[0] for field in peer["issuer"])
    assert "Pebble" in issuer.get("commonName", ""), issuer
    assert ("DNS", HUB_NAME) in peer["subjectAltName"]
    # What the proxy serves is what certbot obtained, copied for the proxy.
    lineage = host.file("/etc/letsencrypt/live/jupyterhub/fullchain.pem").content_string
    assert host.file(SERVED_CERTIFICATE).content_string == lineage
    key = host.file("/etc/jupyterhub/tls/privkey.pem")
    assert (key.user, key.group, key.mode) == ("root", "jupyterhub-proxy", 0o640)


def test_the_hub_host_trusts_pebbles_root_through_the_extra_ca_variable(host):
    # ca_trust_certificates put Pebble's root into the system store: OpenSSL
    # on the hub verifies its own certificate with the system bundle alone.
    assert host.file("/usr/local/share/ca-certificates/jupyterhub-pebble-root.crt").exists
    result = host.run(
        "openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt -untrusted %s %s",
        SERVED_CERTIFICATE,
        SERVED_CERTIFICATE,
    )
    assert result.rc == 0, result.stdout + result.stderr


def test_renewal_is_scheduled_and_hooked(host):
    assert host.service("certbot.timer").is_enabled
    assert host.service("certbot.timer").is_running
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/jupyterhub")
    assert hook.mode == 0o755
    renewal = host.file("/etc/letsencrypt/renewal/jupyterhub.conf").content_string
    assert "authenticator = webroot" in renewal
    assert "server = https://acme.le.test:14000/dir" in renewal


# --- port 80 -----------------------------------------------------------------------


def test_port_80_serves_challenges_and_redirects_everything_else(host):
    challenge_dir = "/var/lib/jupyterhub-acme/.well-known/acme-challenge"
    token = f"{challenge_dir}/molecule-token"
    host.run_expect([0], f"mkdir -p {challenge_dir} && printf token-content > {token}")
    challenges = f"http://{hub_address()}/.well-known/acme-challenge"
    try:
        served = requests.get(f"{challenges}/molecule-token", allow_redirects=False, timeout=10)
        assert (served.status_code, served.text) == (200, "token-content")
        missing = requests.get(f"{challenges}/no-such-token", allow_redirects=False, timeout=10)
        assert missing.status_code == 404
    finally:
        host.run(f"rm -f {token}")
    paths = (
        "/",
        "/hub/login?next=%2Fhub%2F",
        "/.well-known/other",
        "/.well-known/acme-challenge/../x",
    )
    for path in paths:
        response = requests.get(
            f"http://{hub_address()}{path}",
            headers={"Host": HUB_NAME},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 301, path
        location = response.headers["Location"]
        assert location.startswith(f"https://{HUB_NAME}/"), location


# --- the TLS profile ------------------------------------------------------------


def test_https_responses_carry_hsts(running_server):
    session = client()
    login = session.get(hub_url("/hub/login"), timeout=30)
    assert login.status_code == 200
    assert login.headers["Strict-Transport-Security"] == "max-age=63072000"
    session.headers["Authorization"] = f"token {running_server}"
    status = session.get(hub_url(f"/user/{TEST_USER}/api/status"), timeout=30)
    assert status.status_code == 200
    assert status.headers["Strict-Transport-Security"] == "max-age=63072000"


def test_the_tls_profile_passes_sslyze_mozilla_intermediate(capsys):
    # sslyze's HOST:PORT{IP}: connect to the address, check the name.
    target = f"{HUB_NAME}:443{{{hub_address()}}}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={PEBBLE_ROOT}",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    verdict = [line.strip() for line in result.stdout.splitlines() if "compliant" in line.lower()]
    record(
        capsys, "sslyze_mozilla_intermediate", {"exit_code": result.returncode, "verdict": verdict}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert any("OK - Compliant" in line for line in verdict), result.stdout[-3000:]


# --- renewal ------------------------------------------------------------------------


def test_forced_renewal_serves_a_new_serial_and_loses_no_route(host, running_server, capsys):
    before = served_certificate()["serialNumber"]
    routes_before = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert f"/user/{TEST_USER}/" in routes_before

    poller = Poller(
        hub_url(f"/user/{TEST_USER}/api/status"), running_server, client, POLL_INTERVAL_SECONDS
    )
    poller.start()
    time.sleep(3)
    assert poller.successes, f"the server is unreachable before renewal: {poller.failures[-3:]}"
    window_start = poller.successes[0]
    renewal_started = time.monotonic()
    renew = host.run("certbot renew --force-renewal --no-random-sleep-on-renew")
    renewal_ended = time.monotonic()
    time.sleep(5)
    poller.finish()
    window_end = time.monotonic()
    assert renew.rc == 0, renew.stdout + renew.stderr

    gap = poller.longest_gap(window_start, window_end)
    failed = poller.failures_between(window_start, window_end)
    record(
        capsys,
        "forced_renewal",
        {
            "longest_gap_seconds": round(gap, 2),
            "polls_ok": len(poller.successes),
            "polls_failed": len(failed),
            "failure_kinds": sorted(set(failed)),
            "certbot_renew_seconds": round(renewal_ended - renewal_started, 1),
        },
    )
    assert gap < MAX_GAP_SECONDS, f"the user's server was unreachable for {gap:.1f} s"
    # Polled at least once a second during the whole window.
    assert len(poller.successes) + len(failed) >= (window_end - window_start)

    after = served_certificate()["serialNumber"]
    assert after != before, "the proxy still serves the old certificate"
    routes_after = json.loads(hub_app(host, "proxy", "routes", "--json"))
    assert set(routes_after) >= set(routes_before)
