"""Admission: everything decided before a send starts, while a 403, 409, 422 or 429 can still be
answered.

Owns: the sender allow-list and the quota check (:mod:`~sendmail.admission.policy`),
``Idempotency-Key`` claims (:mod:`~sendmail.admission.idempotency`), reservations of the 24-hour
quota shared by concurrent sends (:mod:`~sendmail.admission.reservations`), the batch-queue
429 read from the task hub's work-item queue (:mod:`~sendmail.admission.backlog`), the
failed-login limit of user-send (:mod:`~sendmail.admission.logins`), and SES's own answers about
the sender's verification and the sandbox (:mod:`~sendmail.admission.preflight`).

May import: :mod:`sendmail.sending`, :mod:`sendmail.contract`, :mod:`sendmail.platform`. Never
:mod:`sendmail.feedback` (independent siblings) nor :mod:`sendmail.services`.
"""
