"""The ground everything stands on: typed settings and the host's own storage account.

Owns: :mod:`~sendmail.platform.settings` (every ``SENDMAIL_*`` setting, validated once),
:mod:`~sendmail.platform.storage` (Table, Queue and Blob clients for ``AzureWebJobsStorage``:
connection string, Azurite or managed identity), :mod:`~sendmail.platform.tables` (lazy table
creation, key escaping), :mod:`~sendmail.platform.blobs` (a container's blobs, written whole, read
by range), :mod:`~sendmail.platform.jsontext` (JSON from outside read without crashing the reader)
and :mod:`~sendmail.platform.logs` (the SDKs' loggers held at WARNING: no address in any log).

May import: the standard library and third-party packages only — nothing else of ``sendmail``.
"""
