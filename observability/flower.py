"""`python -m observability.flower`: the management API URL for Flower's broker tab.

Prints what Flower's `--broker_api` option takes (`http://user:password@host:15672/api/`):
RABBITMQ_MANAGEMENT_URL when set, else derived from CELERY_BROKER_URL (its first host on port
15672, its credentials), the same URL GET /metrics reads queue depths from. The Procfile's
`flower` line uses it unless FLOWER_BROKER_API is set.
"""

import os


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings")
    from observability.queue_stats import flower_broker_api

    print(flower_broker_api())


if __name__ == "__main__":
    main()
