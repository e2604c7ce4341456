"""Small constants shared by the HTTP layer and the OpenAPI document (no imports: cheap)."""

#: The longest ``Prefer: wait=N`` honoured (RFC 7240 preferences are hints: longer asks are capped).
MAX_WAIT_SECONDS = 60

#: Durable runtime statuses after which a send will not change any more.
FINISHED_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
