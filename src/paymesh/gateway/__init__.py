"""Gateway: the edge in front of the services (routing, rate limits, API docs)."""
