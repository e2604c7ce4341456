"""Orchestrator function names and the kind of send each one runs."""

SES_ORCHESTRATOR = "send_ses_orchestrator"
SMTP_ORCHESTRATOR = "send_smtp_orchestrator"
#: A lane of a send: its share of the batches, one after another (``orchestrators/lanes.py``).
LANE_ORCHESTRATOR = "send_lane_orchestrator"

KIND_BY_ORCHESTRATOR = {SES_ORCHESTRATOR: "ses", SMTP_ORCHESTRATOR: "smtp"}
