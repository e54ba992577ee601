"""The AI model: inference on submitted photos, training data, retraining and promotion.

A consumer of TaskSubmittedEvent and TaskConfirmedEvent (worker-ai, worker-mlops).
"""
