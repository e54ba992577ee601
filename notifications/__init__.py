"""Push notifications to owners and customers (firebase-admin, or the in-app inbox).

A subscriber of EquipmentFaultEvent (worker-alerts), BranchPreferenceCreatedEvent and
TaskAnalyzedEvent (worker-notify).
"""
