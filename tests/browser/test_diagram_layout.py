"""The topology diagram in Chromium at 1400 px: no text drawn over other text or over a mark
it does not belong to, no text spilling out of its thread box or chip, and CPU ids drawn at a
readable size, on the host page and on a balancing plan's before / after diagrams.

Hosts: every capabilities fixture, crowded as the issue's host is (two pinned vCPUs per VM,
every emulator pinned to its whole cell, over-committed threads, a range pin, a floating VM),
and the issue's host itself: 448 threads, 10 cells, 300 pinned VMs with emulatorpin on their
cell. Every cell is expanded as a user does it ("expand all"), which loads the collapsed
cells' drawings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from balancing.models import BalancingPlan
from numaportal.virt.topology import parse_capabilities
from tests.browser.conftest import computed_plan, crowd, dense_host, sign_in
from tests.screenshots import screenshot
from tests.web.conftest import CAPABILITY_FIXTURES, make_host

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROBE = (Path(__file__).parent / "layout_probe.js").read_text()
#: A CPU id (10.5 px bold, a 12 px box) drawn at least this tall on screen: a diagram scaled
#: down to fit a column of the plan page is not readable.
MIN_CPU_ID_PX = 11


def expand_all(browser, cpus: int) -> None:
    """Press every diagram's "expand all"; wait until each diagram draws all its threads."""
    browser.implicitly_wait(0)
    diagrams = browser.find_elements(By.CSS_SELECTOR, ".numa-diagram")
    assert diagrams
    for diagram in diagrams:
        diagram.find_element(By.CSS_SELECTOR, 'button[data-action="expand"]').click()
    WebDriverWait(browser, 30).until(
        lambda b: all(
            len(d.find_elements(By.CSS_SELECTOR, "g.thread[data-cpu]")) == cpus for d in diagrams
        )
    )
    browser.check_console("after expand all")


def measured(browser, cpus: int) -> dict:
    layout = browser.execute_script(PROBE)
    problems = layout["overlaps"] + layout["outside"]
    assert not problems, f"{len(problems)} collisions, e.g. {problems[:8]}"
    heights = layout["cpuIdHeights"]
    assert len(heights) == cpus * len(browser.find_elements(By.CSS_SELECTOR, ".numa-diagram"))
    assert min(heights) >= MIN_CPU_ID_PX, f"CPU ids drawn {min(heights):.1f} px tall"
    return layout


def check_pages(browser, live_server, superuser, host, shot: str = "") -> dict[str, int]:
    """Both pages measured; *shot* names their screenshots (``<shot>-host``, ``<shot>-plan``)."""
    cpus = len(parse_capabilities(host.capabilities_xml).cpu_ids)
    sign_in(browser, live_server, superuser)
    browser.get(live_server.url + host.get_absolute_url())
    expand_all(browser, cpus)
    texts = {"host page": measured(browser, cpus)["texts"]}
    if shot:
        screenshot(browser, f"{shot}-host")

    plan = computed_plan(host)
    assert plan.status == BalancingPlan.Status.READY, (plan.status, plan.error)
    browser.get(live_server.url + reverse("balancing:plan", args=[plan.pk]))
    expand_all(browser, cpus)
    texts["plan page"] = measured(browser, cpus)["texts"]
    if shot:
        screenshot(browser, f"{shot}-plan")
    return texts


@pytest.mark.parametrize("fixture", CAPABILITY_FIXTURES)
def test_crowded_fixture_hosts_draw_no_text_over_text(
    browser, live_server, superuser, fixture, record_property
) -> None:
    host = make_host("hv", fixture)
    crowd(host)
    texts = check_pages(browser, live_server, superuser, host)
    record_property("texts", texts)


def test_the_issues_dense_host_draws_no_text_over_text(
    browser, live_server, superuser, record_property
) -> None:
    host = dense_host()
    texts = check_pages(browser, live_server, superuser, host, shot="dense-host-diagram")
    record_property("texts", texts)
