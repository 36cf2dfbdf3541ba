from django.apps import AppConfig


class BroadcasterConfig(AppConfig):
    name = "django_broadcaster"
    verbose_name = "Broadcaster"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, layer_checks  # noqa: F401  (register the system checks)
