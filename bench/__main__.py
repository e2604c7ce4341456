"""``python -m bench`` (``make bench``): every benchmark, each reported next to its baseline."""

import json

from bench import admission, import_time, sending

print("import time (cold start):")
print(json.dumps(import_time.run(), indent=2))
print("admission checks per request (Idempotency-Key, batch queue, quota reservation):")
admission.main()
print("the sending engine through devhost, against the SES look-alike:")
sending.main()
