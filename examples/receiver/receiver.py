# pip install standardwebhooks==1.3.0; WEBHOOK_SECRET=whsec_... python receiver.py
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])
seen = set()  # keep these in your database: delivery is at least once


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = self.headers.get("content-length", "")
        if not length.isdigit() or int(length) > 1 << 20:  # no delivery is over 1 MiB
            self.send_response(413)
            return self.end_headers()
        body = self.rfile.read(int(length))
        try:
            event = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(400)
            return self.end_headers()
        if self.headers["webhook-id"] not in seen:  # a retry of a delivery
            seen.add(self.headers["webhook-id"])
            data = event["data"]
            print(event["type"], data["account_id"], event["timestamp"], flush=True)
        self.send_response(204)
        self.end_headers()


server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Receiver)
print("listening on", server.server_port, flush=True)
server.serve_forever()
