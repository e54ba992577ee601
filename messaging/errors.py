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
    """RabbitMQ did not take the message (unreachable, nacked, or no queue bound)."""
