"""The app's non-HTTP, non-Durable triggers, run as the Functions host runs them.

Rooms, each with its sources and contract in its docstring:

- :mod:`.queues` — queue triggers: polling and back-off, batches, visibility, dequeue count,
  the poison queue, ``messageEncoding``, the ``func.QueueMessage`` the worker builds;
- :mod:`.timers` — timer triggers: the schedule monitor and its status, past due, run on
  startup, the ``func.TimerRequest``;
- :mod:`.schedules` — NCRONTAB and TimeSpan schedules, pure;
- :mod:`.names` — ``%setting%`` references and queue names;
- :mod:`.clock` — the time timers see (a test moves it by hand);
- :mod:`.listeners` — all of them, started and stopped with devhost, and what
  ``GET /_dev/triggers`` and ``POST /admin/functions/<name>`` show and do.

Imports run one way: this package uses ``devhost.app_loader`` and ``devhost.invoker`` (what a
function is and how it is called) and ``sendmail.platform.storage`` (storage clients configured
as the host reads its settings); ``devhost.server`` and ``devhost.cli`` use it.
"""
