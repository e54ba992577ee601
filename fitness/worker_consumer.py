"""The workers' consumer: Celery's, without the DelayedDelivery bootstep.

That step declares the native delayed-delivery exchanges and queues, and binds the work
queues to them, every time the consumer (re)starts, once per broker URL: given a cluster's
failover URLs (CELERY_BROKER_URL="amqp://n1;amqp://n2;amqp://n3") it takes each node for a
broker of its own and, when one is down, retries it for about 17 s before the worker
consumes again (benchmarks/cluster_failover.py measured a 17.7 s pause when the first node
was stopped). `manage.py setup_broker` declares the same exchanges, queues and bindings
(fitness.topology.declare_topology) before any worker starts, once for the cluster, so the
step adds nothing here but that pause. Celery's own extension point, the `worker_consumer`
setting, selects this class.
"""

from celery.worker.consumer import Consumer as CeleryConsumer

DELAYED_DELIVERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [step for step in CeleryConsumer.Blueprint.default_steps if step != DELAYED_DELIVERY_STEP]
