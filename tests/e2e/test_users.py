"""The miner manages users and groups on /miner/users, in a real Chromium.

Creating a renter without a password shows a generated one exactly once;
disabling a renter or resetting their password ends the sessions they have
open in another browser; groups are made, assigned per row and deleted after
a confirm dialog. Bad input answers 400, and htmx swaps that page in too, so
the error is shown next to the field.
"""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import WRONG_PASSWORD, heading, menu_links, sign_in

# The tests marked shared_server share one live server: none of them adds a user or a
# group, or signs in as anyone but mina.
pytestmark = pytest.mark.e2e

CAROL_PASSWORD = "carols-first-password"


def as_miner(page, live_server):
    """Sign ``page`` in as the miner and open the Users page."""
    sign_in(page, live_server.url, "miner", "mina", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    menu_links(page).get_by_text("Users", exact=True).click()
    expect(heading(page)).to_have_text("Users")


def add_carol(live_server, *groups):
    """Carol, a renter made through the CLI (groups named here are created)."""
    argv = [f"--group={group}" for group in groups]
    live_server.flask("user", "add", "carol", "--role", "renter", "--display-name", "Carol C",
                      *argv, "--password-stdin", stdin=CAROL_PASSWORD)


def group_name_field(page):
    """The "Group name" input."""
    return page.locator("#new-group").get_by_label("Group name")


def row(page, name):
    return page.locator(f'tr[data-user="{name}"]')


def expect_signed_in_as(page, label):
    expect(page.locator(".who")).to_have_text(label)
    expect(heading(page)).to_have_text(f"Welcome, {label}")


def expect_refused(page):
    expect(page.get_by_role("alert")).to_have_text(WRONG_PASSWORD)
    expect(page.locator("#logout")).to_have_count(0)


def test_create_group_and_renter_with_a_generated_password(page, live_server, new_page):
    as_miner(page, live_server)
    groups = page.locator("table#group-list")
    expect(groups).to_contain_text("No groups yet.")

    new_group = page.locator("#new-group")
    group_name_field(page).fill("lab-a")
    new_group.get_by_label("Description").fill("The first lab")
    new_group.get_by_role("button", name="Create group").click()

    expect(page.get_by_role("status").filter(has_text="Created group")).to_have_text(
        "Created group 'lab-a'.")
    expect(groups).to_contain_text("lab-a")
    expect(groups).to_contain_text("The first lab")

    form = page.locator("#new-user")
    form.get_by_label("User name").fill("carol")
    form.get_by_label("Display name").fill("Carol C")
    form.get_by_label("Role").select_option(label="renter")
    expect(form.get_by_label("Password (leave empty to generate one)")).to_have_value("")
    form.get_by_label("lab-a").check()
    form.get_by_role("button", name="Create user").click()

    shown = page.locator("#shown-password")
    expect(shown).to_contain_text("Password of carol, shown this once:")
    password = shown.locator("code").inner_text().strip()
    assert len(password) >= 12, password
    expect(page.get_by_text("Created renter 'carol'.")).to_be_visible()
    carol = row(page, "carol")
    expect(carol).to_contain_text("Carol C")
    expect(carol).to_contain_text("renter")
    expect(carol.get_by_label("lab-a")).to_be_checked()

    page.reload()
    expect(heading(page)).to_have_text("Users")
    expect(row(page, "carol")).to_be_visible()
    expect(page.locator("#shown-password")).to_have_count(0)
    expect(page.get_by_text(password)).to_have_count(0)

    carols = new_page()
    sign_in(carols, live_server.url, "renter", "carol", password)
    expect(carols).to_have_url(live_server.url + "/renter/")
    expect_signed_in_as(carols, "Carol C")


def test_disable_ends_the_session_and_enable_lets_her_back(page, live_server, new_page):
    add_carol(live_server)
    carols = new_page()
    sign_in(carols, live_server.url, "renter", "carol", CAROL_PASSWORD)
    expect_signed_in_as(carols, "Carol C")

    as_miner(page, live_server)
    row(page, "carol").get_by_role("button", name="Disable").click()
    expect(page.get_by_text("'carol' is now disabled.")).to_be_visible()
    expect(row(page, "carol")).to_contain_text("disabled")
    expect(row(page, "carol").get_by_role("button", name="Enable")).to_be_visible()

    # Her open session ends on her next click.
    menu_links(carols).get_by_text("Notebooks", exact=True).click()
    expect(carols).to_have_url(live_server.url + "/login?next=/renter/notebooks")
    expect(carols.locator("#logout")).to_have_count(0)
    sign_in(carols, live_server.url, "renter", "carol", CAROL_PASSWORD)
    expect_refused(carols)

    row(page, "carol").get_by_role("button", name="Enable").click()
    expect(page.get_by_text("'carol' is now enabled.")).to_be_visible()
    expect(row(page, "carol").get_by_role("button", name="Disable")).to_be_visible()

    sign_in(carols, live_server.url, "renter", "carol", CAROL_PASSWORD)
    expect_signed_in_as(carols, "Carol C")


@pytest.mark.shared_server
def test_miner_cannot_disable_themselves(page, live_server):
    as_miner(page, live_server)
    mina = row(page, "mina")
    expect(mina).to_contain_text("active")
    expect(mina.get_by_role("button", name="Disable")).to_have_count(0)


def test_reset_password_typed_and_generated(page, live_server, new_page):
    add_carol(live_server)
    carols = new_page()
    sign_in(carols, live_server.url, "renter", "carol", CAROL_PASSWORD)
    expect_signed_in_as(carols, "Carol C")

    as_miner(page, live_server)
    carol = row(page, "carol")
    carol.get_by_label("New password").fill("carols-new-password")
    carol.get_by_role("button", name="Reset").click()
    expect(page.get_by_text("Password of 'carol' changed; their sessions are signed out.")
           ).to_be_visible()
    expect(page.locator("#shown-password")).to_have_count(0)  # she was told, not shown

    carols.reload()
    expect(carols.locator("#login-form")).to_be_visible()  # her session ended
    sign_in(carols, live_server.url, "renter", "carol", CAROL_PASSWORD)
    expect_refused(carols)
    sign_in(carols, live_server.url, "renter", "carol", "carols-new-password")
    expect_signed_in_as(carols, "Carol C")

    # An empty password field generates one, shown once.
    row(page, "carol").get_by_role("button", name="Reset").click()
    shown = page.locator("#shown-password")
    expect(shown).to_contain_text("Password of carol, shown this once:")
    generated = shown.locator("code").inner_text().strip()
    assert generated and generated != "carols-new-password"

    other = new_page()
    sign_in(other, live_server.url, "renter", "carol", generated)
    expect_signed_in_as(other, "Carol C")


def test_reset_to_a_short_password_is_refused(page, live_server):
    add_carol(live_server)
    as_miner(page, live_server)
    carol = row(page, "carol")
    carol.get_by_label("New password").fill("short")
    carol.get_by_role("button", name="Reset").click()
    expect(page.get_by_role("alert")).to_have_text("A password must be at least 8 characters.")


def test_save_groups_and_delete_a_group(page, live_server):
    add_carol(live_server, "lab-a")
    as_miner(page, live_server)
    new_group = page.locator("#new-group")
    group_name_field(page).fill("lab-b")
    new_group.get_by_role("button", name="Create group").click()
    expect(page.get_by_text("Created group 'lab-b'.")).to_be_visible()

    carol = row(page, "carol")
    expect(carol.get_by_label("lab-a")).to_be_checked()
    expect(carol.get_by_label("lab-b")).not_to_be_checked()
    carol.get_by_label("lab-a").uncheck()
    carol.get_by_label("lab-b").check()
    carol.get_by_role("button", name="Save groups").click()
    expect(page.get_by_text("Groups of 'carol' saved.")).to_be_visible()

    page.reload()
    carol = row(page, "carol")
    expect(carol.get_by_label("lab-a")).not_to_be_checked()
    expect(carol.get_by_label("lab-b")).to_be_checked()

    groups = page.locator("table#group-list")
    lab_a = groups.locator("tr").filter(has_text="lab-a")
    dialogs, deletes = [], []
    page.on("request", lambda r: deletes.append(r.url)
            if r.method == "POST" and r.url.endswith("/delete") else None)

    # Dismissing the confirm dialog keeps the group (no request is sent).
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    lab_a.get_by_role("button", name="Delete").click()
    assert dialogs == ["Delete group lab-a?"]
    expect(lab_a).to_have_count(1)

    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    lab_a.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Deleted group 'lab-a'.")).to_be_visible()
    expect(lab_a).to_have_count(0)
    expect(groups).to_contain_text("lab-b")
    assert dialogs == ["Delete group lab-a?", "Delete group lab-a?"]
    assert len(deletes) == 1, deletes
    expect(row(page, "carol").get_by_label("lab-b")).to_be_checked()
    expect(row(page, "carol").get_by_label("lab-a")).to_have_count(0)


@pytest.mark.shared_server
@pytest.mark.parametrize("name, password, message", [
    ("Bad Name!", "", "A user name must be 2-32 characters: lowercase letters, digits, "
                      "'.', '_' or '-', starting with a letter."),
    ("rene", "", "A user named 'rene' already exists."),
    ("carol", "short", "A password must be at least 8 characters."),
])
def test_invalid_new_user_shows_the_error(page, live_server, name, password, message):
    as_miner(page, live_server)
    form = page.locator("#new-user")
    form.get_by_label("User name").fill(name)
    form.get_by_label("Password (leave empty to generate one)").fill(password)

    with page.expect_response(lambda r: r.request.method == "POST") as info:
        form.get_by_role("button", name="Create user").click()

    assert info.value.status == 400
    field = page.locator("#new-user").get_by_label("User name")
    expect(page.locator("#new-user .error-text")).to_have_text(message)
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value(name)
    expect(page.locator("#shown-password")).to_have_count(0)
    expect(page.locator("#users tbody tr")).to_have_count(2)  # mina and rene only


@pytest.mark.shared_server
def test_invalid_group_name_shows_the_error(page, live_server):
    as_miner(page, live_server)
    new_group = page.locator("#new-group")
    group_name_field(page).fill("Lab A")
    new_group.get_by_role("button", name="Create group").click()

    expect(new_group.locator(".error-text")).to_have_text(
        "A group name must be 2-32 characters: lowercase letters, digits, "
        "'.', '_' or '-', starting with a letter.")
    expect(page.locator("table#group-list")).to_contain_text("No groups yet.")


def test_users_page_ids_are_unique(page, live_server):
    live_server.flask("user", "add", "dora", "--role", "renter", "--group", "lab-a",
                      "--password-stdin", stdin=PASSWORD)
    as_miner(page, live_server)
    duplicates = page.evaluate("""() => {
        const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
        return ids.filter((id, i) => ids.indexOf(id) !== i);
    }""")
    assert duplicates == []
    expect(page.locator("#new-group").get_by_label("Group name")).to_have_count(1, timeout=1000)


@pytest.mark.shared_server
def test_reload_after_a_password_reset_shows_the_users_page(page, live_server):
    as_miner(page, live_server)
    row(page, "rene").get_by_role("button", name="Reset").click()
    expect(page.locator("#shown-password")).to_be_visible()

    response = page.reload()

    assert response.status == 200, f"{page.url} answered {response.status}"
    expect(heading(page)).to_have_text("Users")
