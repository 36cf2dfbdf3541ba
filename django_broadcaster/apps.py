from django.apps import AppConfig


class BroadcasterConfig(AppConfig):
    name = "django_broadcaster"
    verbose_name = "Broadcaster"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the system checks.
        from . import checks  # noqa: F401
        from .layers import checks as layer_checks  # noqa: F401
