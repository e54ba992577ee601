"""The audit trail: a subscriber of every event (the `audit` queue, the `worker-audit` pool)
that keeps an append-only event log in PostgreSQL, and the operator's timeline of one upload
(request → outbox → published → each subscriber's attempts → effects).

Documented in docs/architecture.md (*Publish–subscribe*, *The audit trail*).
"""
