"""The helper's laundry jobs: registration, photos and the owner's confirmation.

A producer of events (TaskSubmittedEvent, TaskConfirmedEvent); it never imports `ml` or
`notifications`.
"""
