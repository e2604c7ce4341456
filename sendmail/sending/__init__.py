"""The sending engine: everyone, once, as fast as the account allows.

Owns: the SES sender and what its errors mean (:mod:`~sendmail.sending.ses`,
:mod:`~sendmail.sending.ses_errors`), the SMTP sender and its provider registry
(:mod:`~sendmail.sending.smtp`, :mod:`~sendmail.sending.providers`), the message itself
(:mod:`~sendmail.sending.mime`), pacing (:mod:`~sendmail.sending.pacing`), the send ledger and the
batch runner that consults it so a retried activity never re-sends
(:mod:`~sendmail.sending.ledger`, :mod:`~sendmail.sending.runner`), the per-recipient outcomes
(:mod:`~sendmail.sending.results`) and every recipient's, paged
(:mod:`~sendmail.sending.recipients`), a send's stored list and content
(:mod:`~sendmail.sending.lists`) and its record (:mod:`~sendmail.sending.sends`), what crosses
Durable boundaries
(:mod:`~sendmail.sending.jobs`), the sealing keys (:mod:`~sendmail.sending.sealing`) and the
secrets a send needs while it runs, kept apart from it under weekly data keys
(:mod:`~sendmail.sending.secrets`).

May import: :mod:`sendmail.contract` and :mod:`sendmail.platform`. Never admission or feedback:
they plug into the engine (a send function wrapped, a count released), not the other way round.
"""
