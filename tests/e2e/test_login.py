"""A newcomer logs in with a browser, lands on the ops dashboard and finds what is running on
the status page."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_and_status_page(browser, live_server, operator, admin_password):
    browser.get(live_server.url + "/")
    # login required: the browser lands on the login form
    assert "/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys(admin_password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()

    # Logging in lands on the ops dashboard; its navigation leads to the services' status.
    # Wait for the new page's own element, not for a heading: the login page's <h1> can be
    # read while the browser replaces the document ("Node with given id does not belong to
    # the document", CI run 5).
    WebDriverWait(browser, 15).until(ec.url_to_be(live_server.url + "/"))
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "dash-hosts")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    browser.find_element(By.CSS_SELECTOR, ".topbar nav a[href='/status/']").click()
    WebDriverWait(browser, 15).until(
        ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "What is running")
    )
    # Read the table in one script: htmx may swap it in while Python walks the rows.
    rows = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('table.status tbody tr')]"
        ".map(r => [r.dataset.component, r.querySelector('.state').textContent.trim()]))"
    )
    assert rows["Database"] == "running"
    assert rows["libvirt"] == "running"
    # htmx is served from our own static files (no CDN): the refresh attribute is wired.
    assert browser.execute_script("return typeof htmx") == "object"

    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    WebDriverWait(browser, 15).until(ec.url_contains("/login/"))


def test_wrong_password_shows_an_error(browser, live_server, operator):
    browser.get(live_server.url + "/login/")
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    errors = WebDriverWait(browser, 15).until(
        ec.visibility_of_element_located((By.CLASS_NAME, "errors"))
    )
    assert "correct username and password" in errors.text
