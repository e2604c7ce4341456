"""The rule for logs: counts, ids and reasons — never an address, a body or a secret.

The service's own records follow it by construction (they log a send's id, counts and stable
codes; ``tests/devhost/test_ses_events.py`` runs a whole send and fails on any address in the
log). The SDKs underneath do not: azure-core's HTTP logging policy writes every request URL and
its headers at INFO — a Table point read names the row, and the suppression list's rows are
addresses (``…(PartitionKey='example.com',RowKey='victim.person')``) — and botocore logs whole
request bodies at DEBUG. In Azure the Python worker forwards every record at or above the
host's level (INFO by default) to Application Insights, and ``host.json``'s per-category levels
govern only the host's own .NET logs, not these. So the SDKs' loggers are held at WARNING in
the worker (``function_app.py``) and in devhost, whatever the root level: what they say at
WARNING and above (a failing connection, a retry exhausted) is about the service, not the data.
"""

from __future__ import annotations

import logging

#: The SDK logger trees held at WARNING (a logger's level applies to its whole subtree).
SDK_LOGGERS = ("azure", "botocore", "boto3", "urllib3", "s3transfer")


def quiet_sdk_loggers() -> None:
    """Hold the SDKs' loggers at WARNING. Cheap (no SDK is imported): call it at start-up."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
