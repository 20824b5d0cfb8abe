"""The dashboard in a real browser: Playwright drives Debian's headless chromium against `fleetgate serve`.

Each role logs in and walks its pages; an engineer plans and signs, a compliance officer approves (the
statement signed with `fleetgate sign`, as on their own machine), the engineer runs; an engineer sees
no approve form and gets 403 from the API. Screenshots go to each test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from web_helpers import PASSWORD, Served, build_home, copy_home, free_port, sign_with_cli, start_server, stop_server

pytestmark = pytest.mark.browser
CHROMIUM = [os.environ.get("FLEETGATE_CHROMIUM", ""), "/usr/lib/chromium/chromium-headless-shell",
            "/usr/bin/chromium-headless-shell"]
IDP_MODULES = Path(__file__).resolve().parent.parent / ".venv" / "idp"


def _chromium() -> str:
    for path in CHROMIUM:
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("no headless chromium: `make test-deps` installs Debian's chromium-headless-shell "
                "(or set FLEETGATE_CHROMIUM)")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def dash_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    build_home(root, sample_drop_master, deid=True)  # de-identified children for the before/after stills
    return root


@pytest.fixture(scope="module")
def server(dash_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_server(copy_home(dash_master, tmp_path_factory.mktemp("served") / "copy"))
    yield served
    stop_server(served)


class Shots:
    """Screenshots of one test, under its tmp dir."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []

    def __call__(self, page, name: str) -> None:  # noqa: ANN001 - a playwright Page
        path = self.folder / f"{len(self.paths) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)
        print(f"screenshot: {path}")


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path / "screenshots")


def _login_token(browser, served: Served, who):  # noqa: ANN001, ANN202
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login")
    page.fill("#token-login input[name=token]", served.tokens[who.name])
    page.click("#token-login button")
    page.wait_for_selector("#who")
    assert who.name in page.inner_text("#who")
    return page


def _login_password(browser, served: Served, who, password: str = PASSWORD):  # noqa: ANN001, ANN202
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/login")
    page.fill("#password-login input[name=name]", who.name)
    page.fill("#password-login input[name=password]", password)
    page.click("#password-login button")
    return page


def _image_loads(page, selector: str, timeout: float = 30) -> None:  # noqa: ANN001
    """The image decoded in the browser (the page's CSP forbids eval, so poll with a function)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator(selector).evaluate("img => img.complete && img.naturalWidth") > 100:
            return
        time.sleep(0.2)
    raise AssertionError(f"{selector} did not load")


def _sign_in_page(page, what: str, key: Path, tmp: Path) -> None:  # noqa: ANN001
    """Copy the signing request shown, sign it with `fleetgate sign` and paste the envelope back."""
    request = page.input_value(f"#signing-request-{what}")
    envelope = sign_with_cli(request, key, tmp)
    page.fill(f"#submit-{what} textarea[name=envelope]", envelope)
    page.click(f"#submit-{what} button")


def test_every_role_walks_the_dashboard_and_an_export_is_signed_approved_and_run(
        browser, server: Served, shots: Shots, tmp_path: Path) -> None:  # noqa: ANN001
    team = server.team
    # an auditor: overview, catalog with filters, an asset, the log with a proof checked in the browser
    page = _login_token(browser, server, team.auditor)
    assert int(page.inner_text("#asset-count").replace(",", "")) > 10
    assert page.locator("#outcomes-plot svg").count() == 1 and page.locator("#ledger-plot svg").count() == 1
    shots(page, "auditor-overview")
    page.goto("/assets")
    total_all = page.inner_text("#asset-total")
    page.select_option("#filters select[name=kind]", "exterior_video")
    page.wait_for_function("before => document.querySelector('#asset-total').innerText !== before", arg=total_all)
    kinds = page.locator(".asset-row td:nth-child(2)").all_inner_texts()
    assert kinds and set(kinds) == {"exterior_video"}
    shots(page, "auditor-catalog-filtered")
    page.locator(".asset-row a").first.click()
    page.wait_for_selector("#decision")
    assert page.locator("#rules tbody tr").count() > 0
    assert page.locator("#raw-hidden").count() == 1 and page.locator("#raw-still").count() == 0
    assert page.locator("#after-still").count() == 1  # the de-identified copy is shown to every reader
    _image_loads(page, "#after-still")
    shots(page, "auditor-asset-deidentified-only")
    page.goto("/log")
    page.click("#prove")
    # a function, not an expression: Playwright evaluates a bare expression with eval(), which the CSP refuses
    page.wait_for_function("() => document.querySelector('#browser-verdict') && "
                           "document.querySelector('#browser-verdict').innerText.startsWith('included')")
    assert page.inner_text("#server-verdict") == "included"
    shots(page, "auditor-log-proof")
    page.goto("/quarantine")
    shots(page, "auditor-quarantine")
    page.goto("/federation")
    page.goto("/compute")
    assert page.locator("#compute-rows tbody tr").count() == 3
    shots(page, "auditor-compute")

    # an engineer plans and signs with their own key; they see no approve form, and the API says 403
    eng = _login_token(browser, server, team.engineer)
    eng.goto("/plans")
    eng.fill("#new-plan input[name=purpose]", "train driving models")
    eng.click("#new-plan button")
    eng.wait_for_selector("#plan-status")
    assert eng.inner_text("#plan-status") == "draft"
    plan_id = eng.url.rsplit("/", 1)[-1]
    shots(eng, "engineer-draft-to-sign")
    _sign_in_page(eng, "plan", team.key_file(team.engineer), tmp_path)
    eng.wait_for_selector("#plan-status:text('signed')")
    assert eng.locator("#approve").count() == 0 and eng.locator("#approve-form").count() == 0
    shots(eng, "engineer-signed-no-approve")
    r = httpx.post(f"{server.url}/api/v1/plans/{plan_id}/approvals", headers=server.headers(team.engineer),
                   json={"envelope": {}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

    # a compliance officer (password login) approves: the form produces the statement, the officer signs it
    officer = team.compliance[0]
    comp = _login_password(browser, server, officer)
    comp.wait_for_selector("#who")
    comp.goto(f"/plans/{plan_id}")
    comp.fill("#approve-form input[name=ref]", "CAC-2026-0042")
    kinds = comp.locator("#approve-form input[name=kind]")
    assert kinds.count() >= 2
    left_out = kinds.first.get_attribute("value")
    kinds.first.uncheck()  # the officer approves all but one kind: the statement says exactly that
    comp.click("#prepare-approval")
    comp.wait_for_selector("#signing-request-approval")
    statement = json.loads(comp.input_value("#signing-request-approval"))["statement"]
    assert statement["type"] == "fleetgate/approval/v1" and statement["approver"] == officer.name
    assert left_out not in statement["kinds"] and len(statement["kinds"]) == kinds.count() - 1
    shots(comp, "compliance-approval-statement")
    _sign_in_page(comp, "approval", team.key_file(officer), tmp_path)
    comp.wait_for_selector("#approvals")
    assert officer.name in comp.inner_text("#approvals")
    shots(comp, "compliance-approved")

    # the engineer runs it, signing the run statement
    eng.goto(f"/plans/{plan_id}")
    eng.click("#prepare-run")
    eng.wait_for_selector("#signing-request-run")
    _sign_in_page(eng, "run", team.key_file(team.engineer), tmp_path)
    eng.wait_for_selector("#exported")
    assert "pkg-" in eng.inner_text("#exported")
    shots(eng, "engineer-exported")
    # the log pages have the roles of /api/v1/log: not an engineer's
    assert eng.goto("/log?type=web_request").status == 403
    comp.goto("/log?type=web_request")
    assert "dashboard:/plans" in comp.inner_text("#entries")
    shots(comp, "compliance-log-requests")
    # the raw still is shown to engineers
    eng.goto("/assets?kind=exterior_video")
    eng.locator(".asset-row a").first.click()
    eng.wait_for_selector("#raw-still")
    _image_loads(eng, "#raw-still")
    _image_loads(eng, "#after-still")
    # and never to an auditor, even by URL
    raw_url = eng.get_attribute("#raw-still", "src")
    assert page.request.get(server.url + raw_url).status == 403
    shots(eng, "engineer-asset-before-after")
    for path in shots.paths:
        assert path.stat().st_size > 5000, path


def test_forms_need_the_sessions_csrf_token(browser, server: Served) -> None:  # noqa: ANN001
    page = _login_token(browser, server, server.team.engineer)
    r = page.request.post(f"{server.url}/plans", form={"destination": "overseas", "purpose": "x"})
    assert r.status == 403
    r = page.request.post(f"{server.url}/plans", form={"destination": "overseas", "purpose": "x", "csrf": "guess"})
    assert r.status == 403
    cookie = next(c for c in page.context.cookies() if c["name"] == "fleetgate_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"


def test_failed_logins_are_rate_limited(browser, server: Served) -> None:  # noqa: ANN001
    who = server.team.compliance[1]
    for _ in range(5):
        page = _login_password(browser, server, who, "wrong password!")
        assert "wrong token, name or password" in page.inner_text("#login-error")
    page = _login_password(browser, server, who, PASSWORD)  # even the right password waits now
    assert "too many failed logins" in page.inner_text("#login-error")


def _idp(port: int, username: str) -> subprocess.Popen:
    if not (IDP_MODULES / "node_modules" / "oauth2-mock-server").is_dir() or shutil.which("node") is None:
        pytest.skip("no oauth2-mock-server: `make test-deps` installs it with npm")
    major = int(subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(f"node {major} is too old for oauth2-mock-server 9.3 (it needs node 20 or later)")
    proc = subprocess.Popen(["node", str(Path(__file__).parent / "idp" / "mock_idp.mjs"), str(IDP_MODULES),
                             str(port), username], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert line.startswith("ready"), line
    return proc


@pytest.mark.parametrize("username, lands", [("Liu Yang", True), ("Somebody Else", False)])
def test_oidc_login_against_a_local_identity_provider(browser, dash_master: Path, tmp_path: Path, shots: Shots,
                                                      username: str, lands: bool) -> None:  # noqa: ANN001
    idp_port = free_port()
    idp = _idp(idp_port, username)
    served = copy_home(dash_master, tmp_path / "copy")
    try:
        start_server(served, {"FLEETGATE_WEB__OIDC__ISSUER": f"http://localhost:{idp_port}",
                              "FLEETGATE_WEB__OIDC__CLIENT_ID": "fleetgate-dashboard"})
        context = browser.new_context(base_url=served.url)
        page = context.new_page()
        page.goto("/login")
        page.click("#oidc-login")
        if lands:
            page.wait_for_selector("#who")
            assert page.get_attribute("#who", "data-role") == "auditor" and username in page.inner_text("#who")
            shots(page, "oidc-auditor-overview")
        else:
            page.wait_for_selector("#login-error")
            assert "not a registered principal" in page.inner_text("#login-error")
    finally:
        stop_server(served)
        idp.terminate()
        idp.wait(timeout=10)
        idp.stdout.close()
