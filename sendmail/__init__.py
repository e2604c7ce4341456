"""Send-Mail's domain: pure Python, no Azure Functions imports.

The package is layered; imports run downwards only, and ``lint-imports`` (the contracts in
``pyproject.toml``, run by ``make lint`` and ``tests/test_layout.py``) fails on any that runs up:

- :mod:`sendmail.services` — the composition root: builds the process-wide clients and stores.
  :mod:`sendmail.retention` sits beside it (neither imports the other): the purge of what
  finished sends leave behind, across every capability's stores, which it is handed.
- :mod:`sendmail.admission` | :mod:`sendmail.feedback` — what decides whether a send starts, and
  what SES tells the service afterwards. Independent of each other.
- :mod:`sendmail.sending` — the engine: senders, pacing, the ledger, the Durable payloads.
- :mod:`sendmail.contract` — the v1 API: requests, answers, errors, its stable words.
- :mod:`sendmail.platform` — settings and the host's storage account.

The Functions app sits on top of all of it (``api`` > ``orchestrators`` > ``activities`` >
``sendmail``); nothing here imports it, nor ``azure.functions`` or ``azure.durable_functions``.
"""
