"""changes.0004: records of the former kind ``placement`` become ``plan_move`` (and back)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

BEFORE = [("changes", "0003_alter_change_kind")]
AFTER = [("changes", "0004_rename_placement_kind_to_plan_move")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def migrate_to_latest() -> None:
    """Every app's latest migration, as the tests after this one expect the database (not
    0004: a later migration that adds a column would be missing from it)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_placement_records_are_renamed_to_plan_move_and_back(host_factory) -> None:
    host = host_factory("hv1")
    try:
        old = migrate(BEFORE)
        change = old.get_model("changes", "Change")
        plan = change.objects.create(
            actor_name="scheduler", host_id=host.pk, target_name="web1", kind="placement"
        )
        other = change.objects.create(
            actor_name="ops", host_id=host.pk, target_name="web1", kind="vcpupin"
        )

        new = migrate(AFTER).get_model("changes", "Change")
        assert new.objects.get(pk=plan.pk).kind == "plan_move"
        assert new.objects.get(pk=other.pk).kind == "vcpupin"

        back = migrate(BEFORE).get_model("changes", "Change")
        assert back.objects.get(pk=plan.pk).kind == "placement"
    finally:
        migrate_to_latest()
