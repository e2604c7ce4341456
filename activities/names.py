"""Activity function names: the one place they are spelled."""

SEND_SES_BATCH = "send_ses_batch"
SEND_SMTP_BATCH = "send_smtp_batch"
FAIL_BATCH = "fail_batch"
FINISH_SEND = "finish_send"
SEND_FAILED = "send_failed"
RELEASE_QUOTA = "release_quota"
START_SCHEDULED = "start_scheduled"
#: A scheduled send's parent, woken by the control event: the send's control state now.
READ_CONTROL = "read_control"
FORGET_SECRET = "forget_secret"  # noqa: S105 (a function name, not a secret)
