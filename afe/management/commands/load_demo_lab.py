from typing import Any

from django.core.management.base import BaseCommand

from afe.demo_lab import load_demo_lab


class Command(BaseCommand):
    help = "Load the demo lab: local hosts, labels, sample jobs and an admin/admin superuser."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-jobs", action="store_true", help="Create hosts and labels only.")
        parser.add_argument("--admin-password", default="admin",
                            help="Password of the 'admin' superuser created if missing (default: admin).")

    def handle(self, *args: Any, no_jobs: bool = False, admin_password: str = "admin", **options: Any) -> None:
        summary = load_demo_lab(with_jobs=not no_jobs, admin_password=admin_password)
        self.stdout.write(
            f"Demo lab loaded: {summary.hosts_created} host(s), {summary.labels_created} label(s), "
            f"{summary.jobs_created} job(s) created."
        )
