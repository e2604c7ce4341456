"""Delivery feedback: what SES says after sending, and what the service does with it.

Owns: SNS message verification (:mod:`~sendmail.feedback.sns`), reading SES event records
(:mod:`~sendmail.feedback.ses_events`), a send's stored events and counts
(:mod:`~sendmail.feedback.event_store`), the suppression list and the filter that keeps its
addresses out of a batch (:mod:`~sendmail.feedback.suppression`), the SNS notifications already
acted on (:mod:`~sendmail.feedback.replays`), the whole path of one verified SNS message
(:mod:`~sendmail.feedback.intake`), the recipient's own feedback: one-click unsubscribe and
its pages (:mod:`~sendmail.feedback.unsubscribes`), and telling callers what happened: signed
webhooks — events, signatures, safe delivery, the retry schedule
(:mod:`~sendmail.feedback.webhooks`).

May import: :mod:`sendmail.sending` (the suppression filter wraps a batch's send and speaks the
engine's result types), :mod:`sendmail.contract`, :mod:`sendmail.platform`. Never
:mod:`sendmail.admission` (independent siblings) nor :mod:`sendmail.services`.
"""
