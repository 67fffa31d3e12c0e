"""Console sign-in with OpenID Connect, in a real browser: the organization's users sign in
at their identity provider (a test provider, `oidc_provider.py`) and get what their
organization role and workspace memberships allow."""

import os

import httpx
import pytest
from playwright.sync_api import expect

from conftest import ADMIN_KEY, Missive
from oidc_provider import Provider

CLIENT_ID = "missive-console"
SECRET = "client-secret-for-tests"


@pytest.fixture(scope="module")
def sso():
    provider = Provider(CLIENT_ID, SECRET)
    server = Missive()
    # The callback URL names the server's own port, known once it is chosen.
    config = os.path.join(server.home, "missive.toml")
    with open(config, "w") as f:
        f.write(f'[console.oidc]\nissuer = "{provider.issuer}"\nclient_id = "{CLIENT_ID}"\n'
                f'redirect_url = "{server.url}/console/oidc/callback"\n')
    server.env["MISSIVE_CONFIG"] = config
    server.env["MISSIVE_OIDC_CLIENT_SECRET"] = SECRET
    server.start()
    admin = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}
    server.cli("users", "add", "ops@example.com", "--role", "admin")
    server.cli("users", "add", "dev@example.com", "--role", "developer")
    users = httpx.get(server.url + "/v1/organizations/users", headers=admin, params={"limit": 100}).json()["data"]
    dev = next(u["id"] for u in users if u["email"] == "dev@example.com")
    for name in ["blue", "green"]:
        httpx.post(server.url + "/v1/organizations/workspaces", headers=admin, json={"name": name})
    workspaces = httpx.get(server.url + "/v1/organizations/workspaces", headers=admin).json()["data"]
    ids = {w["name"]: w["id"] for w in workspaces}
    added = httpx.post(f"{server.url}/v1/organizations/workspaces/{ids['blue']}/members", headers=admin,
                       json={"user_id": dev, "workspace_role": "workspace_developer"})
    assert added.status_code == 200, added.text
    yield provider, server, ids, dev
    server.stop()
    provider.stop()


def sso_sign_in(page, server, email):
    page.goto(server.url + "/console")
    page.click("#sso-link")
    page.fill("#email", email)
    page.click("#login")
    page.wait_for_url(f"{server.url}/console*")


def test_an_organization_admin_signs_in_at_the_identity_provider(sso, page):
    provider, server, ids, _ = sso
    sso_sign_in(page, server, "ops@example.com")
    expect(page.locator("#who")).to_have_text("Admin")
    expect(page.locator("nav a[href='#audit']")).to_be_visible()
    page.evaluate("location.hash = '#workspaces'")
    expect(page.locator("[data-testid=workspace-green]")).to_be_visible()
    page.fill("#workspace-name", "from-sso")
    page.click("[data-testid=create-workspace] button")
    expect(page.locator("[data-testid=workspace-from-sso]")).to_be_visible()
    # Only the session cookie is left; the sign-in's own cookie is gone.
    names = {c["name"] for c in page.context.cookies()}
    assert "missive_console" in names and "missive_oidc" not in names


def test_a_member_of_two_workspaces_moves_between_them(sso, page):
    provider, server, ids, dev = sso
    admin = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}
    added = httpx.post(f"{server.url}/v1/organizations/workspaces/{ids['green']}/members", headers=admin,
                       json={"user_id": dev, "workspace_role": "workspace_user"})
    assert added.status_code == 200, added.text
    try:
        sso_sign_in(page, server, "dev@example.com")
        expect(page.locator("#who")).to_contain_text("Workspace blue")
        page.select_option("#session-workspace", label="green")
        expect(page.locator("#who")).to_contain_text("Workspace green")
        page.evaluate("location.hash = '#workspaces'")
        expect(page.locator("[data-testid=workspace-green]")).to_be_visible()
        assert page.locator("[data-testid=workspace-blue]").count() == 0
        # Only to a workspace they are a member of: the server checks, not the page.
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        http = httpx.Client(base_url=server.url, cookies=cookies)
        session = http.get("/console/api/session").json()
        assert {w["name"] for w in session["workspaces"]} == {"blue", "green"}
        stranger = httpx.post(server.url + "/v1/organizations/workspaces", headers=admin, json={"name": "red"}).json()
        moved = http.post("/console/api/session/workspace", json={"workspace_id": stranger["id"]},
                          headers={"x-missive-csrf": session["csrf_token"]})
        assert moved.status_code == 404
    finally:
        httpx.delete(f"{server.url}/v1/organizations/workspaces/{ids['green']}/members/{dev}", headers=admin)


def test_a_member_gets_their_workspace_and_loses_it_with_the_membership(sso, page):
    provider, server, ids, dev = sso
    sso_sign_in(page, server, "dev@example.com")
    expect(page.locator("#who")).to_have_text("Workspace blue")
    expect(page.locator("nav a[href='#audit']")).to_be_hidden()
    page.evaluate("location.hash = '#workspaces'")
    expect(page.locator("[data-testid=workspace-blue]")).to_be_visible()
    assert page.locator("[data-testid=workspace-green]").count() == 0
    # Their workspace's prompts are theirs to manage.
    page.evaluate("location.hash = '#prompts'")
    page.fill("[data-testid=prompt-name]", "welcome")
    page.fill("[data-testid=prompt-text]", "Greet the user.")
    page.click("[data-testid=create-prompt] button")
    expect(page.locator("[data-testid=prompt-welcome]")).to_be_visible()

    admin = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}
    removed = httpx.delete(f"{server.url}/v1/organizations/workspaces/{ids['blue']}/members/{dev}", headers=admin)
    assert removed.status_code == 200, removed.text
    page.evaluate("location.hash = '#requests'")
    expect(page.locator("#sign-in")).to_be_visible()


def test_strangers_and_bad_tokens_are_refused_with_the_reason(sso, page):
    provider, server, _, _ = sso
    sso_sign_in(page, server, "stranger@example.com")
    expect(page.locator("#sign-in-error")).to_contain_text("not a user of this organization")
    expect(page.locator("#nav")).to_be_hidden()

    for tamper, reason in [({"nonce": "replayed"}, "nonce"), ({"aud": "another-client"}, "not valid"),
                           ({"iss": "http://elsewhere"}, "not valid"), ({"exp": 1}, "not valid")]:
        provider.tamper = tamper
        try:
            sso_sign_in(page, server, "ops@example.com")
        finally:
            provider.tamper = {}
        expect(page.locator("#sign-in-error")).to_contain_text(reason)
        expect(page.locator("#nav")).to_be_hidden()

    # A callback that did not start here (no sign-in cookie) is refused.
    forged = httpx.get(server.url + "/console/oidc/callback", params={"code": "x", "state": "y"})
    assert forged.status_code in (303, 307) and "did+not+start+here" in forged.headers["location"]
