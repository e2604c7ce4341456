"""What a sender reports for each recipient: the contract between senders and activities."""

from __future__ import annotations

from dataclasses import dataclass

from sendmail.contract.vocabulary import FailureCode


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome for one recipient: a Message-ID, or a failure code and a readable message.

    ``message`` is written by this service (never raw library or server text with secrets).
    """

    recipient: str
    message_id: str | None = None
    code: FailureCode | None = None
    message: str | None = None
    #: Not sent *yet*: a transient condition (throttling, 5xx) or the batch's time ran out. The
    #: orchestration sends it again later; ``code``/``message`` say what it ends as if the send's
    #: deadline passes first.
    pending: bool = False

    @property
    def ok(self) -> bool:
        return self.message_id is not None

    @property
    def is_final_failure(self) -> bool:
        """Not sent, for good (not pending)."""
        return self.message_id is None and not self.pending

    @classmethod
    def sent(cls, recipient: str, message_id: str) -> Delivery:
        return cls(recipient=recipient, message_id=message_id)

    @classmethod
    def failed(cls, recipient: str, code: FailureCode, message: str) -> Delivery:
        return cls(recipient=recipient, code=code, message=message)

    @classmethod
    def postponed(cls, recipient: str, code: FailureCode, message: str) -> Delivery:
        return cls(recipient=recipient, code=code, message=message, pending=True)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What a sender did with one batch: a :class:`Delivery` per recipient, in input order.

    ``rate`` is the pace the sender ended at (SES: it seeds the next batch of the same lane);
    ``stalled`` says the pending recipients are pending because the provider kept refusing,
    not because the batch's time ran out (the orchestration then waits before trying again);
    ``stop`` is the account-level failure (code, message) that stopped the batch, if any: it
    holds for every later batch of the send too.
    """

    deliveries: list[Delivery]
    rate: float | None = None
    stalled: bool = False
    stop: tuple[FailureCode, str] | None = None
