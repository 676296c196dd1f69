"""A real browser plans the balancing of a host; a real Celery worker computes it.

An operator (group "operator") opens the seed-shaped host's page (x86_64-2node-24cpu-ht.xml,
a VM split over both cells, two unpinned VMs, one pinned the seed's way), presses "Plan
balancing", lands on the plan page while it says "computing" and polls (htmx); the worker thread
of the ``worker_queue`` fixture (the host's queue) computes the plan with the real planner, and
the page fills in: status, both diagrams, the score table, the changes, the approve form.
The screenshot goes to ``test-output/screenshots/balancing-plan.png`` for a person to look at.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from balancing.models import BalancingPlan
from tests.e2e.test_numastat_e2e import js_errors
from tests.e2e.test_pin_vcpu import sqlite_readers_do_not_lock  # noqa: F401 - autouse fixture
from tests.screenshots import screenshot
from tests.web.conftest import make_host, make_vm
from tests.web.test_balancing_plans import seed_inventory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "op-password-123"


@pytest.fixture
def operator_account(django_user_model):
    user = django_user_model.objects.create_user("op", password=PASSWORD)
    user.groups.add(Group.objects.get(name="operator"))
    return user


def test_operator_plans_balancing_in_a_browser(
    browser, live_server, operator_account, worker_queue
):
    host, _ = seed_inventory(make_host, make_vm, worker_queue=worker_queue)

    browser.get(f"{live_server.url}/login/?next={host.get_absolute_url()}")
    browser.find_element(By.ID, "id_username").send_keys("op")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_contains(host.get_absolute_url()))

    # the host page's button: a POST with CSRF, then the plan page
    browser.find_element(By.ID, "plan-balancing").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/balancing/plans/"))
    plan = BalancingPlan.objects.get(host=host)
    assert browser.current_url.endswith(plan.get_absolute_url())

    # the worker computes it; the polling page reloads itself once it is ready
    WebDriverWait(browser, 60).until(
        lambda b: b.find_element(By.ID, "plan-status").get_attribute("data-status") != "computing"
    )
    plan.refresh_from_db()
    assert plan.status == BalancingPlan.Status.READY, plan.error
    WebDriverWait(browser, 10).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#diagram-after .numa-diagram"))
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plan-diagrams .numa-diagram")) == 2
    status = browser.find_element(By.ID, "plan-status").text
    assert "waiting for approval" in status
    assert "requested" in status and "by op" in status
    score = browser.find_element(By.ID, "plan-score").text
    assert "total score" in score and "improvement" in score
    rows = browser.find_elements(By.CSS_SELECTOR, "#plan-change-list tr[data-vm]")
    assert len(rows) == plan.moves
    assert "db01" in browser.find_element(By.ID, "plan-change-list").text
    # every moved VM's locality now and predicted after (what-if)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plan-change-list td.locality")) == (
        plan.moves
    )
    button = browser.find_element(By.ID, "approve-button")
    assert button.text.startswith(f"Apply {plan.moves} change")
    assert button.text.endswith(f"to host {host.name}")
    # the two sides sit next to each other at this window width
    before = browser.find_element(By.ID, "diagram-before").rect
    after = browser.find_element(By.ID, "diagram-after").rect
    assert after["x"] > before["x"] + before["width"] - 5
    assert abs(after["y"] - before["y"]) < 5
    assert js_errors(browser) == []
    screenshot(browser, "balancing-plan")
