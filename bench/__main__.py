"""``python -m bench`` (``make bench``): every benchmark, each reported next to its baseline."""

import json

from bench import admission, content, import_time, profile, scale, sending, webhooks

print("import time (cold start):")
print(json.dumps(import_time.run(), indent=2))
print("admission checks per request (Idempotency-Key, batch queue, quota reservation):")
admission.main()
print("the sending engine through devhost, against the SES look-alike:")
sending.main()
print("one send at 10,000 and 100,000 recipients, and the old design at 10,000 and 50,000:")
scale.main()
print("HTML and personalisation: per message, at 300/s, and at admission:")
content.main()
print("webhooks: delivery latency and throughput, and a slow endpoint's cost to sending:")
webhooks.main()
print("where the CPU goes (py-spy --gil), with and without the ledger's group commit:")
try:
    profile.main()
except (OSError, RuntimeError) as exc:  # py-spy needs ptrace, which a container may deny
    print(f"profile skipped: {exc}")
