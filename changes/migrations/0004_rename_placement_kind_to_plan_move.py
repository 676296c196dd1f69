"""Kind ``placement`` is now ``plan_move`` (one VM's move from a balancing plan): "placement" is
left to libvirt's own ``placement='static|auto'`` attribute. Existing records are renamed in place.

Historical models have no append-only queryset, so ``update()`` may rewrite ``kind`` here: this
migration is the one sanctioned exception to "records are never edited".
"""

from django.db import migrations, models


def forwards(apps, schema_editor):
    Change = apps.get_model("changes", "Change")
    Change.objects.filter(kind="placement").update(kind="plan_move")


def backwards(apps, schema_editor):
    Change = apps.get_model("changes", "Change")
    Change.objects.filter(kind="plan_move").update(kind="placement")


class Migration(migrations.Migration):
    dependencies = [
        ("changes", "0003_alter_change_kind"),
    ]

    operations = [
        migrations.AlterField(
            model_name="change",
            name="kind",
            field=models.CharField(
                choices=[
                    ("vcpupin", "vCPU pinning (vcpupin)"),
                    ("emulatorpin", "emulator pinning (emulatorpin)"),
                    ("numatune", "memory placement (numatune)"),
                    ("setvcpus", "vCPU count (setvcpus)"),
                    ("guest_vcpus", "vCPUs online in the guest (guestvcpus)"),
                    ("numa_balancing", "kernel NUMA balancing (numa_balancing)"),
                    ("plan_move", "move from a balancing plan (plan_move)"),
                ],
                editable=False,
                max_length=32,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
