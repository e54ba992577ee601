"""Dead letters: what died, why, and sending it back (DG-04: nothing lost, nothing done twice).

Documented in docs/operating.md (*Dead letters*).

Where a dead letter lives. RabbitMQ dead-letters a message that its consumer gave up on
(`rejected`: retries exhausted, or a permanent error) or that kept killing its workers
(`delivery_limit`) to the dead-letter exchange, which copies it to two queues (see
`fitness.topology`):

* `<queue>.dlq` holds the message itself until an operator replays or purges it: a replay
  moves exactly that message back, body and all, and two operators replaying at once
  never get the same message.
* `dead-letters.archive` is consumed by the archiver (`manage.py archive_dead_letters`),
  which records each death in PostgreSQL (`DeadLetter`, with the body byte for byte and
  the headers): the history stays searchable in the admin after the message is replayed
  or purged. The archiver also runs the consumer's dead-letter hook for a
  `delivery_limit` death: the worker died, so the consumer's own failure handler never
  ran (ml marks the task `failed`).

Browsing reads the history, never the queues. Taking a message from a quorum queue and
returning it counts as a delivery, and RabbitMQ 4 drops a message delivered more often
than the queue's delivery limit (20 unless set): browsing a `.dlq` by taking its messages
would, in time, delete them. So `dlq list`/`show` (and every dry run) read `DeadLetter`
rows, and replay and purge choose there and then take exactly the chosen messages from
the `.dlq`, returning the others with `basic.nack`. The `.dlqs` and the archive queue
have no delivery limit either (see `fitness.topology`).

A message that is not an event envelope (no envelope, no Celery task id: a body published
by hand) is named by `body_id`, derived from its bytes, in both copies; it is shown as it
is and never replayed (there is no event to publish).

Why the error is in PostgreSQL. Celery rejects a failed message with `basic.reject`, which
cannot carry a reason; the consumer records its exception (`consumer_failure_record`,
called from `EventConsumerTask.on_failure`) on the same `DeadLetter` row, keyed by queue
and event id, before the message is rejected; `dlq show` shows it with the rest of the row.

Replaying. Each selected dead letter is taken from its `.dlq` (unacknowledged), published
again through the normal path (`messaging.broker.publish_envelope`: the events exchange,
routing key = its work queue, persistent, mandatory, publisher confirm) as a fresh Celery
message whose retry count is 0, and acknowledged in the `.dlq` only after RabbitMQ
confirmed the new copy. A crash in between leaves the dead letter in the `.dlq` (RabbitMQ
returns unacknowledged messages) and at worst the event published twice, which consumers
skip by `event_id` (`ProcessedEvent`). Messages not selected are returned untouched, and a
sweep stops once it holds every message it was sent for.

The package, by seam (each module imports only what its job needs; the consumers' hot path
imports `failures` alone):

* `messages`: a dead letter read from its headers and body, or from its row (parsing).
* `selection`: which dead letters an operation applies to, summaries and browsing (reads the
  history).
* `sweep`: taking chosen messages from a `.dlq`, returning the others untouched.
* `operations`: replay and purge (`manage.py dlq` and the admin's "Replay selected").
* `archive`: the archiver's record of each death, and the consumers' dead-letter hooks.
* `failures`: the consumer's own record of why it gave up.
"""
