// The Node peer of the webhook function for scripts/bench-coldstart: a
// Node 20 function with the AWS SDK v3 doing the webhook's work for a
// one-item delivery (verify the signature with the app secret from Secrets
// Manager, look the owner up with BatchGetItem, store the event with a
// conditional PutItem), behind the same Lambda Runtime API. Its own small
// runtime loop (what a custom runtime does), so nothing but the work differs.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { DynamoDBClient, BatchGetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { SecretsManagerClient, GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";

const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;
const dynamodb = new DynamoDBClient({});
const secrets = new SecretsManagerClient({});
let appSecret;

async function handle(event) {
  const body = event.isBase64Encoded ? Buffer.from(event.body, "base64") : Buffer.from(event.body ?? "");
  const header = event.headers?.["x-hub-signature-256"] ?? "";
  appSecret ??= JSON.parse(
    (await secrets.send(new GetSecretValueCommand({ SecretId: process.env.META_SECRET_ID }))).SecretString,
  ).instagram_app_secret;
  const expected = createHmac("sha256", appSecret).update(body).digest();
  const given = Buffer.from(header.replace(/^sha256=/, ""), "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { statusCode: 401, body: JSON.stringify({ error: "invalid_signature" }) };
  }
  const delivery = JSON.parse(body);
  const table = process.env.CONNECTIONS_TABLE;
  let stored = 0;
  for (const entry of delivery.entry ?? []) {
    const keys = [
      { pk: { S: `ACCOUNT#${entry.id}` }, sk: { S: "OWNER" } },
      { pk: { S: `PAGE#${entry.id}` }, sk: { S: "ACCOUNT" } },
    ];
    const owners = await dynamodb.send(new BatchGetItemCommand({ RequestItems: { [table]: { Keys: keys } } }));
    const owner = owners.Responses?.[table]?.[0]?.owner_user_id?.S;
    for (const item of entry.messaging ?? []) {
      const eventId = "wh_" + createHash("sha256").update(item.message?.mid ?? "").digest("hex").slice(0, 32);
      const record = {
        event_id: { S: eventId }, kind: { S: "messages" }, account_id: { S: entry.id },
        occurred_at: { S: new Date(item.timestamp).toISOString() }, received_at: { S: new Date().toISOString() },
        payload: { S: JSON.stringify(item) }, expires_at: { N: String(Math.floor(Date.now() / 1000) + 14 * 86400) },
      };
      if (owner) record.user_id = { S: owner };
      try {
        await dynamodb.send(new PutItemCommand({
          TableName: process.env.EVENTS_TABLE, Item: record, ConditionExpression: "attribute_not_exists(event_id)",
        }));
        stored += 1;
      } catch (e) {
        if (e.name !== "ConditionalCheckFailedException") throw e;
      }
    }
  }
  return { statusCode: 200, body: JSON.stringify({ received: stored }) };
}

for (;;) {
  const next = await fetch(`${api}/invocation/next`);
  const id = next.headers.get("lambda-runtime-aws-request-id");
  const event = await next.json();
  try {
    const result = await handle(event);
    await fetch(`${api}/invocation/${id}/response`, { method: "POST", body: JSON.stringify(result) });
  } catch (e) {
    await fetch(`${api}/invocation/${id}/error`, {
      method: "POST", body: JSON.stringify({ errorType: e.name, errorMessage: String(e.message) }),
    });
  }
}
