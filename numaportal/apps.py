from django.apps import AppConfig


class NumaPortalConfig(AppConfig):
    name = "numaportal"
    verbose_name = "NUMA Portal"
