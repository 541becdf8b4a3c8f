"""Verifies one captured delivery with the official `standardwebhooks`
library, unchanged but for its clock: the tests' clock is fixed, so the
library's "now" is set to the instant the test says (argv[1], unix seconds).

stdin: {"secret": "whsec_...", "headers": {...}, "body": "<exact text>"}.
Exit 0 and prints the parsed payload's "type" when the signature verifies.
"""

import json
import sys
from datetime import datetime, timezone

import standardwebhooks.webhooks as wh_module
from standardwebhooks import Webhook

NOW = datetime.fromtimestamp(int(sys.argv[1]), tz=timezone.utc)


class _FixedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


wh_module.datetime = _FixedDatetime

req = json.load(sys.stdin)
payload = Webhook(req["secret"]).verify(req["body"].encode(), req["headers"])
print(payload["type"])
