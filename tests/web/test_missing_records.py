"""A queued message whose record is not in the database (another portal's Redis, a restored
backup) ends quietly as "missing": no traceback, nothing applied."""

from __future__ import annotations

import uuid

import pytest

from balancing import tasks as balancing_tasks
from changes import tasks as change_tasks
from changes.models import Change

pytestmark = [pytest.mark.web, pytest.mark.django_db]


def test_a_change_message_without_its_record_ends_missing():
    change_id = str(uuid.uuid4())
    assert change_tasks.apply_change(change_id) == {
        "change": change_id,
        "status": "missing",
        "error": "no such change",
    }
    assert not Change.objects.exists()


def test_a_plan_message_without_its_record_ends_missing():
    plan_id = str(uuid.uuid4())
    result = balancing_tasks.apply_plan(plan_id)
    assert result == {"plan": plan_id, "status": "missing", "outcome": "no such plan"}
