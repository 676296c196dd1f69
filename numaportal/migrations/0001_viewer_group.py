"""The "viewer" group: read-only access to every inventory page (view_* of hosts and vms).

Permissions are normally created by a post_migrate signal, i.e. after all migrations of a
fresh database have run; they are created here first so that the group can hold them. A later
model in hosts or vms needs a migration like this one to add its view permission.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("hosts", "vms")
GROUP = "viewer"


def create_viewer_group(apps, schema_editor):
    for label in APPS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # create_permissions skips apps without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=APPS, codename__startswith="view_"
        )
    )


def delete_viewer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("hosts", "0001_initial"),
        ("vms", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_viewer_group, delete_viewer_group)]
