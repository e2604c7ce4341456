"""Webhook deliveries: a queue-triggered function, not a Durable activity.

Each message of ``sendmail-webhooks`` is one event on its way to one endpoint
(:mod:`sendmail.feedback.webhooks.outbox`). The function makes one attempt and, when it must be
retried, queues the next attempt (invisible until its time) before it returns: the host completes
this message only then, so a crash at any point leaves a message to deliver — at least once, with
the same ``webhook-id``. An exception (the next attempt could not be queued) leaves the message to
the host's own retries (``maxDequeueCount``, then ``sendmail-webhooks-poison``).

A slow endpoint must never slow sending. The queue keeps deliveries out of the task hub (its
work-item queue and activity slots are the sends'), and the function is ``async`` and runs each
attempt on a small pool of its own (:data:`DELIVERY_THREADS`): a sync function would run on the
Python worker's thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``, 12, sized for the batch
activities and orchestrators), and ``host.json``'s queue batch (16 + 8) of deliveries each held
for up to 20 s by a dead endpoint would take every one of those threads; ``asyncio.to_thread``
would take the event loop's default pool, which the HTTP routes' parsing and admission use.
Here a waiting delivery holds no thread at all.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func

logger = logging.getLogger(__name__)

bp = func.Blueprint()

WEBHOOK_QUEUE = (
    "sendmail-webhooks"  # sendmail.feedback.webhooks.outbox.QUEUE_NAME (a test holds them equal)
)
#: Attempts in flight per worker process, at most.
DELIVERY_THREADS = 4
_deliveries = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="webhook")


@bp.function_name("deliver_webhook")
@bp.queue_trigger(arg_name="message", queue_name=WEBHOOK_QUEUE, connection="AzureWebJobsStorage")
async def deliver_webhook(message: func.QueueMessage) -> None:
    text = message.get_body().decode("utf-8")
    loop = asyncio.get_running_loop()
    outcome = await loop.run_in_executor(_deliveries, _deliver, text)
    logger.info("webhook delivery: %s (dequeue count %s)", outcome, message.dequeue_count)


def _deliver(text: str) -> str:
    from sendmail import services
    from sendmail.feedback.webhooks.outbox import deliver

    return deliver(services.webhooks(), services.webhook_sender(), services.webhook_queue(), text)
