"""What the scenarios' browser tests share: Debian's Chromium, trusting only pinned keys.

Playwright drives /usr/bin/chromium on the test host (a browser download by
``playwright install`` is impossible here). Chromium reaches each server by its
name, mapped to a container's address (--host-resolver-rules), and accepts
exactly the certificates given, pinned by public key
(--ignore-certificate-errors-spki-list): no other certificate error is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hub_client import podman_address
from playwright.sync_api import Browser, Page, expect, sync_playwright

# A notebook with one empty Python code cell, for a test to type into.
ONE_CELL_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "c1",
            "metadata": {},
            "outputs": [],
            "source": [],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def put_notebook(host, path: str, owner: str) -> None:
    """Write ONE_CELL_NOTEBOOK to ``path`` in the container, owned by ``owner``."""
    encoded = base64.b64encode(json.dumps(ONE_CELL_NOTEBOOK).encode()).decode()
    host.run_expect([0], f"echo {encoded} | base64 -d > {path} && chown {owner}:{owner} {path}")


def spki_pin(pem: bytes) -> str:
    """Chromium's pin of a certificate: base64 of the SHA-256 of its public key info."""
    key = x509.load_pem_x509_certificate(pem).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def chromium(addresses: Mapping[str, str], certificates: Sequence[bytes]) -> Iterator[Browser]:
    """A fresh Chromium that resolves ``addresses`` (name: IP) and trusts only ``certificates``."""
    rules = ", ".join(f"MAP {name} {address}" for name, address in addresses.items())
    pins = ",".join(spki_pin(pem) for pem in certificates)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--host-resolver-rules={rules}",
                f"--ignore-certificate-errors-spki-list={pins}",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def hub_page(
    host, name: str, certificate_path: str, screenshots: Path
) -> Iterator[tuple[Page, Callable[[str], None]]]:
    """A page in a fresh Chromium on the hub in testinfra's ``host``, and a screenshot taker.

    Chromium reaches the hub as ``name`` at the container's address and trusts
    only its certificate (read from ``certificate_path`` in the container).
    ``shot(step)`` saves the page as ``screenshots/<host>/<step>.png``.
    """
    shots = screenshots / host.backend.name
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\n[browser] screenshots: {shots}", file=sys.__stdout__, flush=True)
    certificate = host.file(certificate_path).content_string.encode()
    with chromium({name: podman_address(host.backend.name)}, [certificate]) as browser:
        page = new_page(browser)

        def shot(step: str) -> None:
            page.screenshot(path=str(shots / f"{step}.png"), full_page=True)

        yield page, shot


# Each page's console errors and warnings and uncaught exceptions, for failure messages.
_console: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


def new_page(browser: Browser) -> Page:
    """A page in a fresh context: a laptop-sized window, 60 s for every wait."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    messages = _console[page] = []
    page.on(
        "console",
        lambda message: (
            message.type in ("error", "warning")
            and messages.append(f"{message.type}: {message.text}")
        ),
    )
    page.on("pageerror", lambda error: messages.append(f"uncaught: {error}"))
    return page


def submit_login(page: Page, hub_url: str, username: str, password: str) -> None:
    """Fill in and send the hub's login form (the caller checks where it leads)."""
    page.goto(f"{hub_url}/hub/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")


def start_jupyterlab(page: Page, hub_url: str, username: str) -> None:
    """From a logged-in hub page: start the server (default options) and wait for JupyterLab."""
    page.goto(f"{hub_url}/hub/spawn")
    page.wait_for_url(f"{hub_url}/user/{username}/lab**", timeout=180_000)
    page.wait_for_selector(".jp-LabShell")


def notebook_state(page: Page) -> str:
    """What the open notebook shows: for a failure message when a cell did not run."""
    return json.dumps(
        page.evaluate(
            """() => {
              const texts = (selector) =>
                [...document.querySelectorAll(selector)].map((e) => e.innerText.trim());
              return {
                url: location.href,
                kernel: texts('.jp-NotebookPanel-toolbar .jp-KernelName'),
                statusBar: texts('.jp-StatusBar-TextItem'),
                prompts: texts('.jp-Notebook .jp-InputPrompt'),
                cells: texts('.jp-Notebook .jp-Cell .cm-content'),
                outputs: texts('.jp-Notebook .jp-OutputArea-output'),
                dialogs: texts('.jp-Dialog'),
                focused: document.activeElement ? document.activeElement.className : null,
              };
            }"""
        )
    )


def run_first_cell(
    page: Page, notebook_url: str, code: str, output: str, screenshot: str | None = None
) -> None:
    """Open the notebook, type ``code`` into its first cell, run it, wait for ``output``.

    On failure, the error says what the notebook showed (kernel, status bar,
    prompts, outputs, dialogs) and, given ``screenshot``, a picture is saved there.
    """
    try:
        page.goto(notebook_url)
        # Type only once the kernel is connected and idle, as the status bar
        # says ("Python 3 | Idle"). The toolbar's execution indicator is no
        # sign of that: it starts out "idle" before the notebook has a kernel,
        # and Shift+Enter then opens the "Select Kernel" dialog or runs nothing.
        page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(
            timeout=180_000
        )
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.click()
        page.keyboard.type(code)
        expect(editor).to_have_text(code)
        page.keyboard.press("Shift+Enter")
        page.locator(".jp-OutputArea-output", has_text=output).first.wait_for(timeout=120_000)
    except Exception as error:
        if screenshot:
            page.screenshot(path=screenshot, full_page=True)
        raise AssertionError(
            f"running {code!r} in {notebook_url} did not show {output!r}: {error}\n"
            f"the notebook showed: {notebook_state(page)}\n"
            f"the browser's console said: {json.dumps(_console.get(page, [])[-20:])}"
            + (f"\nscreenshot: {screenshot}" if screenshot else "")
        ) from error
