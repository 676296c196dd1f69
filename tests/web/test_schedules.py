"""The periodic tasks: created by migrate, editable in the admin, never overwritten."""

import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from numaportal.celery import app as celery_app
from numaportal.schedules import default_schedules, ensure_default_schedules

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def test_migrate_created_every_default_schedule() -> None:
    rows = {p.name: p for p in PeriodicTask.objects.select_related("interval")}
    assert rows["sample-all-hosts"].task == "hosts.tasks.sample_all_hosts"
    assert rows["sample-all-hosts"].interval.every == 60
    assert rows["sample-all-hosts"].expire_seconds == 60  # a stale sample is dropped
    assert rows["rollup-numastat"].task == "hosts.tasks.rollup_numastat"
    assert rows["rollup-numastat"].interval.every == 900
    assert rows["reconcile-stale-changes"].interval.every == 120
    assert rows["check-drift"].task == "changes.tasks.check_drift"
    assert rows["sync-all-hosts"].interval.every == 300
    assert rows["prune-login-logs"].task == "numaportal.tasks.prune_login_logs"
    assert rows["prune-login-logs"].interval.every == 24 * 3600


def test_every_default_names_a_task_the_workers_load() -> None:
    """A beat row whose task no worker registered is an "unregistered task" error each run."""
    celery_app.loader.import_default_modules()  # what a worker does at start (autodiscovery)
    assert {entry.task for entry in default_schedules()} - set(celery_app.tasks) == set()


def test_an_admins_edit_survives_the_next_migrate() -> None:
    task = PeriodicTask.objects.get(name="sample-all-hosts")
    task.interval, _ = IntervalSchedule.objects.get_or_create(
        every=30, period=IntervalSchedule.SECONDS
    )
    task.save()
    assert ensure_default_schedules() == 0
    assert PeriodicTask.objects.get(name="sample-all-hosts").interval.every == 30


def test_a_deleted_default_comes_back_and_beat_settings_do_not_overwrite() -> None:
    PeriodicTask.objects.filter(name="check-drift").delete()
    assert ensure_default_schedules() == 1
    assert PeriodicTask.objects.get(name="check-drift").interval.every == 600
    # beat copies CELERY_BEAT_SCHEDULE over the rows at start: it must stay empty.
    assert settings.CELERY_BEAT_SCHEDULE == {}
