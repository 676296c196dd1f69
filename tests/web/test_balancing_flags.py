"""The VM's balancing flags (locked / dedicated), set by operators on the VM page."""

import pytest
from django.urls import reverse

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
    response = client.post(flags_url(vm), {"balancing_locked": "on", "dedicated": "on"})
    assert response.status_code == 302
    vm.refresh_from_db()
    assert vm.balancing_locked and vm.dedicated
    client.post(flags_url(vm), {"dedicated": "on"})  # unticked "locked" means unlocked
    vm.refresh_from_db()
    assert not vm.balancing_locked and vm.dedicated


def test_a_viewer_sees_the_flags_but_cannot_set_them(viewer_client, vm):
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    assert "May be moved by a balancing plan." in page
    assert 'id="balancing-flags-form"' not in page
    assert viewer_client.post(flags_url(vm), {"balancing_locked": "on"}).status_code == 403
    vm.refresh_from_db()
    assert not vm.balancing_locked


def test_get_and_anonymous_are_refused(client, operator_user, vm):
    assert client.post(flags_url(vm), {"balancing_locked": "on"}).status_code == 302  # login
    client.force_login(operator_user)
    assert client.get(flags_url(vm)).status_code == 405
