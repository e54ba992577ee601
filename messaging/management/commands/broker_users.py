"""`manage.py broker_users`: the RabbitMQ users of fitness/broker_users.py, as commands or manifests."""

import yaml
from django.core.management.base import BaseCommand

from fitness import broker_users

HEADER = """\
# The RabbitMQ users, one per process type, with their rights (RabbitMQ Messaging Topology
# Operator: User and Permission). Generated from fitness/broker_users.py by
#   python manage.py broker_users --format kubernetes > deploy/kubernetes/rabbitmq-users.yaml
# do not edit by hand: tests/deploy/test_kubernetes.py checks that the two agree. Each User takes
# its credentials from the Secret fitness-rabbitmq-<process> (secrets.yaml).
"""


class Command(BaseCommand):
    help = (
        "Print the RabbitMQ users of fitness/broker_users.py (one per process type) with their "
        "configure/write/read rights: as rabbitmqctl commands (the default; set the passwords), "
        "as the Messaging Topology Operator's User and Permission resources (--format kubernetes, "
        "what deploy/kubernetes/rabbitmq-users.yaml holds), or as a table (--format table). Changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["rabbitmqctl", "kubernetes", "table"], default="rabbitmqctl")
        parser.add_argument("--vhost", default="/", help="The virtual host the rights are for (default /).")

    def handle(self, *args, format: str = "rabbitmqctl", vhost: str = "/", **options):
        if format == "kubernetes":
            self.stdout.write(kubernetes_yaml(vhost), ending="")
        elif format == "table":
            for user in broker_users.BROKER_USERS:
                tags = f"  tags: {','.join(user.tags)}" if user.tags else ""
                self.stdout.write(f"{user.name}  ({user.purpose}){tags}")
                for right, pattern in user.permissions().items():
                    self.stdout.write(f"    {right:<9} {pattern}")
        else:
            for line in broker_users.rabbitmqctl_commands(vhost):
                self.stdout.write(line)


def kubernetes_yaml(vhost: str = "/") -> str:
    documents = broker_users.kubernetes_resources(vhost)
    return HEADER + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=False, width=200).replace(
        "\n...\n", "\n")
