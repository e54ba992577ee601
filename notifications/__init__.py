"""Push notifications to owners and customers (firebase-admin, or the in-app inbox).

A consumer of EquipmentFaultEvent and BranchPreferenceCreatedEvent (worker-alerts, worker-notify).
"""
