"""mailctl's exit codes: what a script can rely on (the README lists them too).

One code per thing a caller would act on differently: fix the input (2), look at the report (3),
look at the service's answer (5), try again later (6), keep watching (7, 130), leave it (8:
someone canceled the send).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    #: The send finished and every recipient was sent (``send --no-wait``: the send was accepted;
    #: ``pause``, ``resume``, ``cancel``: done, or the send already was as asked).
    OK = 0
    #: Bad command line or input: unreadable list or body file, bad rows, no recipients, a
    #: ``--url`` that is not http(s), a ``--report`` path that cannot be written (checked before
    #: anything is sent). Nothing was sent. ``cancel`` without ``--yes`` when stdin is not a
    #: terminal, or answered no: nothing was canceled.
    USAGE = 2
    #: The send finished, but some recipients failed (the report and the summary say which).
    PARTIAL = 3
    #: The send finished without sending to anyone, or ended Failed / Terminated (Durable's own
    #: Canceled too).
    FAILED = 4
    #: The service refused the request (4xx but 429: key, validation, sender, unknown id, the
    #: Idempotency-Key used for another request). Its envelope message is printed.
    REFUSED = 5
    #: Try again later: the service could not be reached, failed (network, timeout, 5xx) or is
    #: busy (429: quota or backlog, with when to retry; 409 for longer than the service takes to
    #: free a key left by a dead request). For ``send``: re-running the same command is safe
    #: (Idempotency-Key).
    UNAVAILABLE = 6
    #: ``status``: the send is still running — or paused (it may be resumed), or canceled with
    #: its counts not final yet.
    RUNNING = 7
    #: ``send``, ``watch``, ``status``: the send ended canceled (by ``mailctl cancel`` or any
    #: caller) — on purpose, with what was sent before the cancel; the rest was never sent.
    #: Neither a failure to look into (4) nor recipients to send again (3).
    CANCELED = 8
    #: Ctrl-C: watching stopped; the send itself goes on (the id and how to resume are printed).
    #: (Watching that stops on an error exits 5 or 6, and prints the id and how to resume too.)
    INTERRUPTED = 130
