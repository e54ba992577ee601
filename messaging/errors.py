"""Errors a consumer can raise, and how the base consumer treats them.

Any other exception is treated as transient: retried after 1 s, 2 s and 4 s, then
dead-lettered. A PermanentError is dead-lettered at once, because retrying cannot help.
"""


class PermanentError(Exception):
    """Handling this event can never succeed as it is: dead-letter it without retrying."""


class InvalidEvent(PermanentError):
    """The message is not a valid envelope, or its payload breaks its contract."""


class UnknownEvent(PermanentError):
    """No contract is registered for this event type and schema version."""


class TransientError(Exception):
    """A failure worth retrying (a dependency was briefly unavailable)."""


class BrokerUnavailable(Exception):
    """RabbitMQ did not take the message.

    Raised as such when RabbitMQ cannot be used at all (no connection, a timed-out
    connect or confirm): publishing anything else now would fail the same way, so the
    caller stops and tries again later. Its subclass MessageRefused says it was this one
    message that RabbitMQ refused.
    """


class MessageRefused(BrokerUnavailable):
    """RabbitMQ was reachable and refused this one message; others may well go through.

    Returned as unroutable under `mandatory` (no queue is bound for its routing key, e.g. a
    queue removed by a topology change), nacked (a queue with reject-publish is full), or a
    channel error caused by this publish (its exchange is missing, access refused). The
    outbox backs such a row off alone and carries on with the rows behind it. A subclass of
    BrokerUnavailable so that every caller that only asks "was it published?" still catches it.
    """
