"""The baseline a user would write: one ``sesv2`` client, a for-loop, one ``send_email`` each.

The client has botocore's default configuration (retry mode ``standard`` unless
``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` say otherwise: 3 attempts for throttling, 5xx and
broken connections, with botocore's own backoff and retry quota). Each recipient is sent once;
a ``ClientError`` is counted under its code and the loop moves on. Anything else (a dropped
connection that botocore stopped retrying, for instance) ends the run, as it would end the
user's script. No pacing, no threads, no ledger: it is only the baseline benchmarks compare to.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import boto3
from botocore.exceptions import ClientError

SENDER = "se@aifactory.page"


@dataclass
class NaiveResult:
    sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # error code -> recipients
    elapsed: float = 0.0


def send_all(
    recipients: Sequence[str],
    *,
    endpoint_url: str | None = None,
    sender: str = SENDER,
    subject: str = "Benchmark",
    body: str = "Hello from the naive baseline.",
    region: str = "ap-northeast-2",
) -> NaiveResult:
    """Send one message per recipient, one after another; count what happened."""
    # A local endpoint (the look-alike) takes any credentials; real SES gets the default chain.
    dummy = "testing" if endpoint_url else None
    client = boto3.client(
        "sesv2",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=dummy,
        aws_secret_access_key=dummy,
    )
    result = NaiveResult()
    started = time.monotonic()
    for recipient in recipients:
        try:
            client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={
                    "Simple": {
                        "Subject": {"Data": subject, "Charset": "UTF-8"},
                        "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                    }
                },
            )
            result.sent += 1
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            result.failed[code] = result.failed.get(code, 0) + 1
    result.elapsed = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--recipients", type=int, default=100)
    args = parser.parse_args()
    recipients = [f"user{i}@example.com" for i in range(args.recipients)]
    print(json.dumps(asdict(send_all(recipients, endpoint_url=args.endpoint_url))))


if __name__ == "__main__":
    main()
