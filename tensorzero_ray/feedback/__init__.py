"""Feedback: validation against metrics and stored inferences, and its rows."""

from tensorzero_ray.feedback.service import FeedbackService

__all__ = ["FeedbackService"]
