"""The ground everything stands on: typed settings and the host's own storage account.

Owns: :mod:`~sendmail.platform.settings` (every ``SENDMAIL_*`` setting, validated once),
:mod:`~sendmail.platform.storage` (Table and Queue clients for ``AzureWebJobsStorage``:
connection string, Azurite or managed identity) and :mod:`~sendmail.platform.tables` (lazy table
creation, key escaping).

May import: the standard library and third-party packages only — nothing else of ``sendmail``.
"""
