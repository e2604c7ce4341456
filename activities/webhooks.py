"""Webhook deliveries: a queue-triggered function, not a Durable activity.

Each message of ``sendmail-webhooks`` is one event on its way to one endpoint
(:mod:`sendmail.feedback.webhooks.outbox`). The function makes one attempt and, when it must be
retried, queues the next attempt (invisible until its time) before it returns: the host completes
this message only then, so a crash at any point leaves a message to deliver — at least once, with
the same ``webhook-id``. An exception (the next attempt could not be queued) leaves the message to
the host's own retries (``maxDequeueCount``, then ``sendmail-webhooks-poison``).

It runs on the host's queue-trigger slots, apart from the sends' task hub: a slow endpoint never
holds an activity slot or counts in the batch-queue 429. Synchronous: the attempt's socket calls
block, so the worker runs it on a thread.
"""

import logging

import azure.functions as func

logger = logging.getLogger(__name__)

bp = func.Blueprint()

WEBHOOK_QUEUE = (
    "sendmail-webhooks"  # sendmail.feedback.webhooks.outbox.QUEUE_NAME (a test holds them equal)
)


@bp.function_name("deliver_webhook")
@bp.queue_trigger(arg_name="message", queue_name=WEBHOOK_QUEUE, connection="AzureWebJobsStorage")
def deliver_webhook(message: func.QueueMessage) -> None:
    from sendmail import services
    from sendmail.feedback.webhooks.outbox import deliver

    outcome = deliver(
        services.webhooks(),
        services.webhook_sender(),
        services.webhook_queue(),
        message.get_body().decode("utf-8"),
    )
    logger.info("webhook delivery: %s (dequeue count %s)", outcome, message.dequeue_count)
