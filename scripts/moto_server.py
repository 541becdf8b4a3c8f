"""moto's server, with every request handled under one lock.

moto's DynamoDB is not thread-safe: a transaction deep-copies the tables it
touches and restores that copy if it fails, so a request interleaved with it
can be lost ("dictionary changed size during iteration", or a vanished write).
DynamoDB itself serialises conflicting writes; one lock gives the same.

IGC_MOTO_NO_SNAPSHOT=1 (benchmarks only) also skips that snapshot: it costs
O(table size) per transaction, which at 10,000 rows measures moto instead of
the code under test. Failed transactions then don't roll back, so only use it
where every transaction is asserted to succeed.
"""

import os
import sys
import threading

import moto.server as server

_lock = threading.Lock()
_call = server.DomainDispatcherApplication.__call__


def _locked(self, environ, start_response):
    with _lock:
        return _call(self, environ, start_response)


server.DomainDispatcherApplication.__call__ = _locked

if os.environ.get("IGC_MOTO_NO_SNAPSHOT") == "1":
    import moto.dynamodb.models as dynamodb_models

    class _NoSnapshot:
        @staticmethod
        def deepcopy(obj, memo=None):
            return obj

    dynamodb_models.copy = _NoSnapshot

if __name__ == "__main__":
    server.main(sys.argv[1:])
