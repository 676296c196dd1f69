"""The VM's balancing flags (locked / dedicated), set by operators on the VM page."""

import pytest
from django.urls import reverse

from changes.models import Change

pytestmark = [pytest.mark.web, pytest.mark.django_db]


@pytest.fixture
def vm(host_factory, vm_factory):
    return vm_factory(host_factory("hv1"), "db01")


def flags_url(vm) -> str:
    return reverse("vms:balancing-flags", args=[vm.host.name, vm.uuid])


def test_an_operator_locks_a_vm_and_marks_it_dedicated(client, operator_user, vm):
    client.force_login(operator_user)
    page = client.get(vm.get_absolute_url()).content.decode()
    assert 'id="balancing-flags-form"' in page
    response = client.post(
        flags_url(vm), {"balancing_locked": "on", "dedicated": "on", "reason": "db: keep it"}
    )
    assert response.status_code == 302
    vm.refresh_from_db()
    assert vm.balancing_locked and vm.dedicated
    # unticked "locked" means unlocked
    client.post(flags_url(vm), {"dedicated": "on", "reason": "let plans move it"})
    vm.refresh_from_db()
    assert not vm.balancing_locked and vm.dedicated


def test_each_save_of_the_flags_is_a_change_record(client, operator_user, vm):
    # There were none: the flags changed without a trace in the audit trail.
    client.force_login(operator_user)
    client.post(flags_url(vm), {"dedicated": "on", "reason": "latency-sensitive database"})
    client.post(flags_url(vm), {"dedicated": "on", "reason": "unchanged"})  # nothing to record
    client.post(flags_url(vm), {"balancing_locked": "on", "reason": "freeze for the audit"})
    first, second = Change.objects.filter(vm=vm).order_by("created_at")
    assert (first.kind, first.status, first.scope) == ("vm_flags", "succeeded", "portal")
    assert (first.actor, first.actor_name, first.host) == (operator_user, "op", vm.host)
    assert first.before == {"balancing_locked": False, "dedicated": False}
    assert first.after == {"balancing_locked": False, "dedicated": True}
    assert first.params == {"dedicated": True} and first.diff == "dedicated: no -> yes"
    assert first.reason == "latency-sensitive database"
    assert second.diff == "balancing_locked: no -> yes\ndedicated: yes -> no"
    assert "nothing changed on the host" in second.outcome
    # in the history: the list (before -> after in words) and the record's page
    listed = client.get(reverse("changes:list"), {"kind": "vm_flags"}).content.decode()
    assert "dedicated: no -&gt; yes" in listed and "freeze for the audit" in listed
    detail = client.get(first.get_absolute_url()).content.decode()
    assert 'id="change-diff">dedicated: no -&gt; yes</pre>' in detail
    assert 'data-diff="portal"' in detail
    # and on the VM page's recent changes
    assert "latency-sensitive database" in client.get(vm.get_absolute_url()).content.decode()


def test_the_flags_need_a_reason(client, operator_user, vm):
    client.force_login(operator_user)
    response = client.post(flags_url(vm), {"dedicated": "on"}, follow=True)
    assert "a reason is required for the audit trail" in response.content.decode()
    vm.refresh_from_db()
    assert not vm.dedicated and not Change.objects.exists()


def test_a_viewer_sees_the_flags_but_cannot_set_them(viewer_client, vm):
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    assert "May be moved by a balancing plan." in page
    assert 'id="balancing-flags-form"' not in page
    response = viewer_client.post(flags_url(vm), {"balancing_locked": "on", "reason": "r"})
    assert response.status_code == 403
    vm.refresh_from_db()
    assert not vm.balancing_locked


def test_get_and_anonymous_are_refused(client, operator_user, vm):
    assert client.post(flags_url(vm), {"balancing_locked": "on"}).status_code == 302  # login
    client.force_login(operator_user)
    assert client.get(flags_url(vm)).status_code == 405
