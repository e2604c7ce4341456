"""``python -m bench``: every benchmark, each reported next to its baseline."""

import json

from bench import devhost_throughput, import_time

print("import time (cold start):")
print(json.dumps(import_time.run(), indent=2))
print("10,000 recipients through devhost:")
devhost_throughput.main()
