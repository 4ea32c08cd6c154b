from django.apps import AppConfig


class AfeConfig(AppConfig):
    name = "afe"
    verbose_name = "AFE (Autotest Front End)"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the auth-user tie)
