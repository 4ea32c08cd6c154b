"""A small demo lab: a few hosts that run on this machine, labels, and sample jobs."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from .models import AclGroup, ControlType, Host, HostAttribute, Job, Label, User

DEMO_LABELS = {
    "demo-platform": True,  # name → is a platform label
    "board:demo": False,
    "pool:demo": False,
    "pool:suites": False,
}
DEMO_HOSTS = {
    "demo-host1": ["demo-platform", "board:demo", "pool:demo"],
    "demo-host2": ["demo-platform", "board:demo", "pool:demo"],
    "demo-host3": ["demo-platform", "board:demo", "pool:suites"],
    "demo-host4": ["demo-platform", "board:demo", "pool:suites"],
}
SERVER_CONTROL = """\
def run(machine):
    host = hosts.create_host(machine)
    job.run_test('uptime', host=host, command='uptime')

parallel_simple(run, machines)
"""
CLIENT_CONTROL = """\
#!/bin/sh
echo "hello from $(hostname)"
uname -a
"""


@dataclass
class DemoLabSummary:
    hosts_created: int
    labels_created: int
    jobs_created: int


@transaction.atomic
def load_demo_lab(with_jobs: bool = True, admin_password: str | None = "admin") -> DemoLabSummary:
    """Create the demo lab; safe to run again (existing rows are kept). Returns what was created."""
    labels = {}
    labels_created = 0
    for name, platform in DEMO_LABELS.items():
        labels[name], made = Label.objects.get_or_create(name=name, defaults={"platform": platform})
        labels_created += made
    hosts_created = 0
    for hostname, label_names in DEMO_HOSTS.items():
        host, made = Host.objects.get_or_create(hostname=hostname)
        hosts_created += made
        if made:
            host.labels.set([labels[n] for n in label_names])
            HostAttribute.objects.create(host=host, attribute="connection", value="local")
    AclGroup.rebalance_everyone()

    if admin_password and not get_user_model().objects.filter(username="admin").exists():
        get_user_model().objects.create_superuser("admin", "admin@localhost", admin_password)

    jobs_created = 0
    if with_jobs and not Job.objects.filter(name__startswith="demo:").exists():
        owner = User.objects.get_or_create(login="admin", defaults={"access_level": User.ACCESS_ROOT})[0]
        Job.create(owner=owner, name="demo: client job on demo-host1", control_file=CLIENT_CONTROL,
                   control_type=ControlType.CLIENT, hosts=["demo-host1"])
        Job.create(owner=owner, name="demo: server job on any pool:demo host", control_file=SERVER_CONTROL,
                   control_type=ControlType.SERVER, meta_hosts=["pool:demo"], dependencies=["pool:demo"])
        Job.create(owner=owner, name="demo: synchronous job on two pool:suites hosts",
                   control_file=SERVER_CONTROL, control_type=ControlType.SERVER,
                   meta_hosts=["2*pool:suites"], dependencies=["pool:suites"], synch_count=2)
        jobs_created = 3
    return DemoLabSummary(hosts_created, labels_created, jobs_created)
