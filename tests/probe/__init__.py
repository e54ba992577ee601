"""A test-only app: probe events and consumers that exercise the messaging foundation
through real RabbitMQ queues and a real worker, the way Zulip keeps a `test` queue."""
