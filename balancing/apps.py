from django.apps import AppConfig


class BalancingConfig(AppConfig):
    name = "balancing"
    verbose_name = "NUMA balancing"

    def ready(self) -> None:
        # Imported here, not at module level: balancing.inputs touches models, which are not
        # loaded when AppConfig modules are (Django's documented place for such imports).
        # A vCPU hot-added to a pinned VM follows the host's policy; changes, below balancing,
        # asks through its hook (changes.kinds.policy_hook) instead of importing balancing.
        from balancing.inputs import hotadd_policy_for_host
        from changes.kinds import policy_hook

        policy_hook.register(hotadd_policy_for_host)
