"""Change history review: list filters, CSV export, the detail page with its diffs and polling,
the VM page's recent changes and the dashboard's drift count (who may do what:
``test_change_roles.py``).

Records are written directly (``Change.objects.create``: a new record may carry any state);
nothing here queues a worker.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from changes.models import Change
from tests.web.changes_helpers import make_change
from web.changes.views import PAGE_SIZE, csv_safe

pytestmark = [pytest.mark.web, pytest.mark.django_db]

LIBVIRT_REFUSAL = (
    "Unsupported configuration: can't change nodeset for strict mode for running domain"
)


# --- list and filters -----------------------------------------------------------------------------


def names(response) -> list[str]:
    return [c.reason for c in response.context["changes"]]


def test_list_newest_first_with_every_filter(ops_client, inventory, operator_user):
    now = timezone.now()
    db01, web01 = inventory["db01"], inventory["web01"]
    group = uuid.uuid4()
    make_change(db01, reason="old pin", created_at=now - timedelta(days=10), status="succeeded")
    make_change(
        db01,
        reason="memory to node 1",
        kind="numatune",
        params={"mode": "strict", "nodeset": "1"},
        status="failed",
        error=LIBVIRT_REFUSAL,
        created_at=now - timedelta(days=2),
        actor=operator_user,
        actor_name="op",
    )
    make_change(web01, reason="emulator away", kind="emulatorpin", group_id=group)
    make_change(web01, reason="second of group", group_id=group, actor_name="bob")

    url = reverse("changes:list")
    response = ops_client.get(url)
    assert response.status_code == 200
    assert names(response) == ["second of group", "emulator away", "memory to node 1", "old pin"]
    assert ops_client.get(url, {"host": "hv02"}).context["page"].paginator.count == 2
    assert names(ops_client.get(url, {"vm": db01.pk})) == ["memory to node 1", "old pin"]
    assert names(ops_client.get(url, {"target": "WEB"})) == ["second of group", "emulator away"]
    assert names(ops_client.get(url, {"actor": "bob"})) == ["second of group"]
    assert names(ops_client.get(url, {"kind": "numatune"})) == ["memory to node 1"]
    assert names(ops_client.get(url, {"status": "failed"})) == ["memory to node 1"]
    assert names(ops_client.get(url, {"q": "NODE 1"})) == ["memory to node 1"]
    assert names(ops_client.get(url, {"group": str(group)})) == [
        "second of group",
        "emulator away",
    ]
    since = (now - timedelta(days=3)).date().isoformat()
    until = (now - timedelta(days=1)).date().isoformat()
    ranged = ops_client.get(url, {"created_after": since, "created_before": until})
    assert names(ranged) == ["memory to node 1"]
    older = ops_client.get(url, {"created_before": (now - timedelta(days=5)).date().isoformat()})
    assert names(older) == ["old pin"]
    # a bad filter value is a form error on the page, not a 500
    assert ops_client.get(url, {"status": "exploded", "vm": "x"}).status_code == 200


def test_list_is_paginated(ops_client, inventory):
    for i in range(PAGE_SIZE + 5):
        make_change(inventory["db01"], reason=f"change {i:03}")
    first = ops_client.get(reverse("changes:list"), {"kind": "vcpupin"})
    assert len(first.context["changes"]) == PAGE_SIZE
    assert first.context["changes"][0].reason == f"change {PAGE_SIZE + 4:03}"
    page = first.content.decode()
    assert "kind=vcpupin&amp;page=2" in page
    second = ops_client.get(reverse("changes:list"), {"kind": "vcpupin", "page": 2})
    assert len(second.context["changes"]) == 5


def test_list_queries_do_not_grow_with_rows(ops_client, inventory, django_assert_max_num_queries):
    for i in range(3):
        make_change(inventory["db01"], reason=f"a{i}")
    with django_assert_max_num_queries(8) as few:
        ops_client.get(reverse("changes:list"))
    for i in range(30):
        make_change(inventory["web01"], reason=f"b{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        ops_client.get(reverse("changes:list"))


# --- CSV export -----------------------------------------------------------------------------------


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_export_honours_the_filters_and_escapes_formulas(ops_client, inventory):
    db01 = inventory["db01"]
    make_change(db01, reason='=HYPERLINK("http://evil","x")', actor_name="@admin")
    make_change(db01, reason="+1 cell", kind="emulatorpin", params={"cpuset": "-1"})
    make_change(inventory["web01"], reason="plain reason")
    make_change(db01, reason="\t=tabbed", status="failed", error="-ERR libvirt said no")

    response = ops_client.get(reverse("changes:export"), {"host": "hv01"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 3
    by_reason = {row["reason"]: row for row in rows}
    assert '\'=HYPERLINK("http://evil","x")' in by_reason
    assert by_reason['\'=HYPERLINK("http://evil","x")']["actor"] == "'@admin"
    assert "'+1 cell" in by_reason
    assert "'\t=tabbed" in by_reason
    assert by_reason["'\t=tabbed"]["error"] == "'-ERR libvirt said no"
    assert by_reason["'\t=tabbed"]["status"] == "failed"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert read_csv(ops_client.get(reverse("changes:export"), {"q": "plain"}))[0]["vm"] == "web01"
    # the page links the export with its own filters
    page = ops_client.get(reverse("changes:list"), {"host": "hv01"}).content.decode()
    assert f'href="{reverse("changes:export")}?host=hv01"' in page


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\r=x", "'\r=x"),
        ("ok = fine", "ok = fine"),
        (None, ""),
        (3, "3"),
    ],
)
def test_csv_safe(value, expected):
    assert csv_safe(value) == expected


# --- detail page ----------------------------------------------------------------------------------


PERSISTENT_BEFORE = "<domain>\n  <vcpu>4</vcpu>\n</domain>\n"
PERSISTENT_AFTER = (
    "<domain>\n  <vcpu>4</vcpu>\n  <cputune><vcpupin vcpu='0' cpuset='22'/></cputune>\n</domain>\n"
)


def snapshot(xml: str, pin: str | None) -> dict:
    return {
        "persistent_xml": xml,
        "live_xml": xml.replace("<domain>", "<domain id='7'>"),
        "tuning": {"vcpupin": {"0": pin} if pin else {}},
        "vcpucount": {"maximum_config": 4},
        "vcpu_info": [{"vcpu": 0, "cpu": 22 if pin else 1, "affinity": pin or "0-23"}],
    }


def test_detail_shows_everything_and_escapes_the_diff(ops_client, inventory):
    change = make_change(
        inventory["db01"],
        status="succeeded",
        started_at=timezone.now() - timedelta(seconds=3),
        finished_at=timezone.now(),
        before=snapshot(PERSISTENT_BEFORE, None),
        after=snapshot(PERSISTENT_AFTER, "22"),
        diff="-<script>alert('x')</script>\n+<vcpupin vcpu='0' cpuset='22'/>",
        outcome="vCPU 0 pinned to 22 live and in config; read back agrees",
        reason="<b>bold</b> reason",
    )
    response = ops_client.get(change.get_absolute_url())
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; reason" in page
    assert "read back agrees" in page
    assert 'data-status="succeeded"' in page
    assert "hx-trigger" not in page  # ended: no polling
    assert "(3.00 s)" in page or "s)" in page
    # computed diffs: persistent XML, live XML, tuning, vcpuinfo
    diffs = {d["slug"]: d["diff"] for d in response.context["diffs"]}
    assert "+  &lt;cputune&gt;" not in diffs["persistent"]  # raw in context, escaped on the page
    assert "+  <cputune><vcpupin vcpu='0' cpuset='22'/></cputune>" in diffs["persistent"]
    assert "<domain id='7'>" in diffs["live"]
    assert '+      "0": "22"' in diffs["tuning"] or '"0": "22"' in diffs["tuning"]
    assert "+  &lt;cputune&gt;&lt;vcpupin vcpu=&#x27;0&#x27; cpuset=&#x27;22&#x27;/&gt;" in page
    # parameters, actor, scope
    assert "<th>cpuset</th><td><code>22</code></td>" in page
    assert "alice" in page and "live+config" in page


def test_failed_change_shows_libvirts_message(ops_client, inventory):
    change = make_change(
        inventory["db01"],
        kind="numatune",
        params={"mode": "strict", "nodeset": "1"},
        status="failed",
        error=LIBVIRT_REFUSAL,
        outcome="nothing changed",
    )
    page = ops_client.get(change.get_absolute_url()).content.decode()
    assert "can&#x27;t change nodeset for strict mode for running domain" in page
    assert 'class="error-text libvirt-error"' in page
    assert 'data-status="failed"' in page


def test_queued_change_polls_until_it_ends(ops_client, inventory):
    change = make_change(inventory["db01"])
    page = ops_client.get(change.get_absolute_url()).content.decode()
    status_url = reverse("changes:status", args=[change.pk])
    assert f'hx-get="{status_url}?polling=1"' in page
    assert 'hx-trigger="every 2s"' in page

    fragment = ops_client.get(status_url, {"polling": 1})
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html and 'hx-trigger="every 2s"' in html
    assert "HX-Refresh" not in fragment

    Change.objects.filter(pk=change.pk).update(status="running", started_at=timezone.now())
    assert 'hx-trigger="every 2s"' in ops_client.get(status_url, {"polling": 1}).content.decode()

    Change.objects.filter(pk=change.pk).update(status="succeeded", finished_at=timezone.now())
    ended = ops_client.get(status_url, {"polling": 1})
    assert "hx-trigger" not in ended.content.decode()
    assert ended["HX-Refresh"] == "true"  # the page reloads once to show the diffs
    assert 'data-status="succeeded"' in ended.content.decode()


def test_group_link_lists_every_change_of_the_group(ops_client, inventory):
    group = uuid.uuid4()
    first = make_change(inventory["db01"], group_id=group, reason="vcpu 0")
    make_change(
        inventory["db01"], group_id=group, reason="vcpu 1", params={"vcpu": 1, "cpuset": "23"}
    )
    make_change(inventory["db01"], reason="other")
    page = ops_client.get(first.get_absolute_url()).content.decode()
    link = f"{reverse('changes:list')}?group={group}"
    assert f'href="{link}"' in page
    assert "(2 changes)" in page
    listed = ops_client.get(link)
    assert sorted(names(listed)) == ["vcpu 0", "vcpu 1"]


def test_unknown_change_is_404(ops_client):
    assert ops_client.get(reverse("changes:detail", args=[uuid.uuid4()])).status_code == 404


# --- VM page and dashboard ------------------------------------------------------------------------


def test_vm_page_lists_its_last_ten_changes_with_badges(ops_client, inventory):
    db01 = inventory["db01"]
    for i in range(12):
        make_change(db01, reason=f"r{i:02}", status="succeeded" if i % 2 else "failed")
    make_change(inventory["web01"], reason="not this vm")
    response = ops_client.get(db01.get_absolute_url())
    recent = response.context["recent_changes"]
    assert [c.reason for c in recent] == [f"r{i:02}" for i in range(11, 1, -1)]
    page = response.content.decode()
    assert page.count('class="badge status-succeeded"') == 5
    assert page.count('class="badge status-failed"') == 5
    assert "not this vm" not in page
    assert f"{reverse('changes:list')}?vm={db01.pk}" in page


def test_dashboard_counts_drifted_vms_and_links_the_vm_list(ops_client, host_factory, vm_factory):
    host = host_factory("hv01")
    vm_factory(host, "drifted", drift=True, drift_detail="vCPU 0 pinned to 1 live, 0 in config")
    vm_factory(host, "also", drift=True)
    vm_factory(host, "fine")
    page = ops_client.get(reverse("hosts:list")).content.decode()
    assert 'id="drift-summary"' in page
    assert f'href="{reverse("vms:list")}?drift=true">2 drifted VMs</a>' in page
    assert 'data-drift-count="2"' in page
    listed = ops_client.get(reverse("vms:list"), {"drift": "true"})
    assert sorted(vm.name for vm in listed.context["vms"]) == ["also", "drifted"]


def test_nav_links_the_change_history(ops_client):
    page = ops_client.get(reverse("hosts:list")).content.decode()
    assert f'href="{reverse("changes:list")}"' in page
