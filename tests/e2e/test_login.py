"""A newcomer logs in with a browser and sees what is running."""

import pytest
from selenium.webdriver.common.by import By

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_and_status_page(browser, live_server, operator, admin_password):
    browser.get(live_server.url + "/")
    # login required: the browser lands on the login form
    assert "/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys(admin_password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()

    heading = browser.find_element(By.TAG_NAME, "h1")
    assert heading.text == "What is running"
    rows = {
        row.get_attribute("data-component"): row.find_element(By.CLASS_NAME, "state").text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.status tbody tr")
    }
    assert rows["Database"] == "running"
    assert rows["libvirt"] == "running"
    # htmx is served from our own static files (no CDN): the refresh attribute is wired.
    assert browser.execute_script("return typeof htmx") == "object"

    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    assert "/login/" in browser.current_url


def test_wrong_password_shows_an_error(browser, live_server, operator):
    browser.get(live_server.url + "/login/")
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    assert "correct username and password" in browser.find_element(By.CLASS_NAME, "errors").text
