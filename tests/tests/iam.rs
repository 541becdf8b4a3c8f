//! The roles' policies in `template.yaml` against what the code really asks
//! of DynamoDB: every request the `connections`, `graph`, `publish`, `admin`
//! and `deliver` functions make in a run through their real entry points
//! (list, delete with a Page alias, a proxied call, a dead token; posts
//! created, listed, cancelled, published and failed; every admin route, a
//! fan-out, a failed attempt, a replay page) is recorded and must be allowed by that
//! function's statements: action, table or index, `dynamodb:LeadingKeys`,
//! `dynamodb:Attributes`. moto checks no IAM, so without this a policy
//! narrower than the code would only fail in AWS.

use std::collections::BTreeMap;

use infra::apigw::{ApiRequest, ResponseExt};
use infra::graph_proxy;
use infra::meta::{FbPage, FbPerson};
use infra::requests::{Asked, Requests};
use infra::template::yaml_serde::Value;
use integration_tests::*;

/// One Allow statement of a function's role, as the test reads it.
#[derive(Debug)]
struct Grant {
    actions: Vec<String>,
    resources: Vec<String>,
    leading_keys: Option<Vec<String>>,
    attributes: Option<Vec<String>>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Tagged(t) => format!(
            "!{} {}",
            t.tag.to_string().trim_start_matches('!'),
            text(&t.value)
        ),
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(text).collect(),
        Value::Null => vec![],
        other => vec![text(other)],
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_sequence()
        .map(|s| s.iter().map(|k| k.as_str().unwrap().to_string()).collect())
}

fn grant(s: &Value) -> Grant {
    let c = &s["Condition"];
    Grant {
        actions: list(&s["Action"]),
        resources: list(&s["Resource"]),
        leading_keys: strings(&c["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]),
        attributes: strings(&c["ForAllValues:StringEquals"]["dynamodb:Attributes"]),
    }
}

/// The Allow statements of `function`'s role: its own policies and any
/// `AWS::IAM::Policy` attached to `<function>Role`.
fn grants(doc: &Value, function: &str) -> Vec<Grant> {
    let resources = doc["Resources"].as_mapping().unwrap();
    let own = doc["Resources"][function]["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default());
    let attached = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::IAM::Policy"))
        .filter(|r| list(&r["Properties"]["Roles"]).contains(&format!("!Ref {function}Role")))
        .flat_map(|r| {
            r["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        });
    own.chain(attached)
        .filter(|s| s["Effect"].as_str() == Some("Allow"))
        .map(|s| grant(&s))
        .collect()
}

fn like(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

/// The table's (or index's) partition key attribute.
fn hash_key(doc: &Value, table: &str, index: Option<&str>) -> String {
    let p = &doc["Resources"][table]["Properties"];
    let schema = match index {
        None => &p["KeySchema"],
        Some(i) => &p["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| g["IndexName"].as_str() == Some(i))
            .unwrap()["KeySchema"],
    };
    schema
        .as_sequence()
        .unwrap()
        .iter()
        .find(|k| k["KeyType"].as_str() == Some("HASH"))
        .unwrap()["AttributeName"]
        .as_str()
        .unwrap()
        .to_string()
}

fn allows(g: &Grant, asked: &Asked, table: &str, leading: &str) -> bool {
    let resource = match &asked.index {
        None => format!("!GetAtt {table}.Arn"),
        Some(i) => format!("!Sub ${{{table}.Arn}}/index/{i}"),
    };
    g.actions.iter().any(|a| a == asked.action)
        && g.resources.contains(&resource)
        && g.leading_keys
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|k| like(k, leading)))
        && g.attributes
            .as_ref()
            .is_none_or(|allowed| asked.attributes.iter().all(|a| allowed.contains(a)))
}

/// The template's logical ids of the stack's tables, by name.
fn tables(h: &Harness) -> BTreeMap<String, String> {
    infra::template::tables(&infra::template::template_path())
        .into_iter()
        .filter_map(|t| {
            let var = infra::template::env_var_for(&t.logical_id)?;
            Some((h.stack.var(var).to_string(), t.logical_id))
        })
        .collect()
}

/// Every request `function` made that its role would be refused, described.
fn refused(h: &Harness, function: &str, asked: &[Asked]) -> Vec<String> {
    let doc = infra::template::document(&infra::template::template_path());
    let grants = grants(&doc, function);
    let tables = tables(h);
    asked
        .iter()
        .filter_map(|a| {
            let Some(table) = tables.get(&a.table) else {
                return Some(format!("{a:?}: not a table of the template"));
            };
            let key = hash_key(&doc, table, a.index.as_deref());
            let leading = a.values.get(&key).cloned().unwrap_or_default();
            (!grants.iter().any(|g| allows(g, a, table, &leading))).then(|| {
                format!(
                    "{} on {table}{} with {key} = {leading:?}, attributes {:?}",
                    a.action,
                    a.index
                        .as_deref()
                        .map(|i| format!("/index/{i}"))
                        .unwrap_or_default(),
                    a.attributes
                )
            })
        })
        .collect()
}

fn actions(asked: &[Asked]) -> Vec<&'static str> {
    let mut a: Vec<_> = asked.iter().map(|a| a.action).collect();
    a.sort();
    a.dedup();
    a
}

#[tokio::test]
async fn the_connections_function_asks_dynamodb_only_what_its_role_allows() {
    let mut h = Harness::new().await;
    h.stack.meta.set_facebook_person(FbPerson::new(
        "10160000000000031",
        "Grace",
        vec![FbPage::linked(
            "p31",
            "Studio",
            "17841400000000031",
            "studio",
        )],
    ));
    let back = h.connect("facebook", "user-31").await;
    assert_eq!(back.status(), 302);
    let account = h.connect_instagram_as("user-31", "studio.ig").await;

    let recorded = Requests::default();
    h.stack.dynamodb = recorded.dynamodb(&h.stack.aws);
    let connections = h.stack.connections(h.clock.clone());
    let list = connections
        .handle(
            ApiRequest::new("GET", "/connections")
                .user("user-31")
                .into_request(),
        )
        .await;
    assert_eq!(list.status(), 200, "{}", list.body_text());
    for path in [
        "/connections/facebook/17841400000000031".to_string(),
        format!("/connections/instagram/{account}"),
    ] {
        let deleted = connections
            .handle(
                ApiRequest::new("DELETE", &path)
                    .user("user-31")
                    .into_request(),
            )
            .await;
        assert_eq!(deleted.status(), 204, "{path}: {}", deleted.body_text());
    }
    let asked = recorded.take();
    // The run went through every kind of request the function makes.
    assert_eq!(
        actions(&asked),
        [
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem"
        ]
    );
    assert!(
        asked
            .iter()
            .any(|a| a.values.get("pk").is_some_and(|k| k.starts_with("PAGE#"))),
        "the Page alias was read and deleted"
    );
    let refused = refused(&h, "ConnectionsFunction", &asked);
    assert!(
        refused.is_empty(),
        "refused in AWS:\n{}",
        refused.join("\n")
    );
}

#[tokio::test]
async fn the_graph_function_asks_dynamodb_only_what_its_role_allows() {
    let mut h = Harness::new().await;
    let account = h.connect_instagram_as("user-32", "dying.two").await;
    let recorded = Requests::default();
    h.stack.dynamodb = recorded.dynamodb(&h.stack.aws);
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let call = |method: &str, path: &str| {
        ApiRequest::new(
            method,
            &format!("/connections/instagram/{account}/graph/{path}"),
        )
        .user("user-32")
    };
    let read = graph.handle(call("GET", "me/media").into_request()).await;
    assert_eq!(read.status(), 200, "{}", read.body_text());
    let sent = graph
        .handle(
            call("POST", "me/messages")
                .header("idempotency-key", "k-32")
                .json(&serde_json::json!({"recipient": {"id": "1"}, "message": {"text": "hi"}}))
                .into_request(),
        )
        .await;
    assert_eq!(sent.status(), 200, "{}", sent.body_text());
    // The backend door without a user reads the owner claim (400 once the
    // door requires user_id: then it reads nothing).
    let backend = graph
        .handle_invocation(serde_json::json!({
            "provider": "instagram", "account_id": account, "method": "GET",
            "path": "me", "query": {}, "body": null, "idempotency_key": null
        }))
        .await;
    assert!(
        [200, 400].contains(&backend["status"].as_u64().unwrap()),
        "{backend}"
    );
    // A dead token: the connection flips to needs_reauth with its event.
    h.stack.meta.invalidate_account(&account);
    let dead = graph.handle(call("GET", "me/media").into_request()).await;
    assert_eq!(dead.status(), 409, "{}", dead.body_text());
    let asked = recorded.take();
    assert_eq!(h.events("connection.needs_reauth").await.len(), 1);
    assert!(
        asked.iter().any(|a| a.action == "dynamodb:PutItem"
            && a.values
                .get("event_id")
                .is_some_and(|id| id.starts_with("lc_"))),
        "the needs_reauth event was written"
    );
    let refused = refused(&h, "GraphFunction", &asked);
    assert!(
        refused.is_empty(),
        "refused in AWS:\n{}",
        refused.join("\n")
    );
}

#[tokio::test]
async fn both_publish_doors_ask_dynamodb_only_what_their_roles_allow() {
    use publish::Door;
    let mut h = Harness::new().await;
    let account = h.connect_instagram_as("user-33", "poster.three").await;
    let recorded = Requests::default();
    h.stack.dynamodb = recorded.dynamodb(&h.stack.aws);
    let (http, _) = infra::publish::publisher(&h.stack, h.clock.clone(), Door::Http);
    let (run, _) = infra::publish::publisher(&h.stack, h.clock.clone(), Door::Invoke);
    let posts = |method: &str, rest: &str| {
        ApiRequest::new(
            method,
            &format!("/connections/instagram/{account}/posts{rest}"),
        )
        .user("user-33")
    };
    let image = serde_json::json!({"type": "feed",
        "media": [{"kind": "image", "url": "https://cdn.example.com/1.jpg"}]});
    // The HTTP door: create (with a key), list, read, cancel a scheduled one.
    let created = http
        .handle(
            posts("POST", "")
                .header("idempotency-key", "k-33")
                .json(&image)
                .into_request(),
        )
        .await;
    assert_eq!(created.status(), 202, "{}", created.body_text());
    let mut later = image.clone();
    later["publish_at"] = serde_json::json!("2026-11-22T09:00:00Z");
    let scheduled = http
        .handle(posts("POST", "").json(&later).into_request())
        .await
        .body_json();
    let id = scheduled["post_id"].as_str().unwrap();
    for (method, rest, status) in [
        ("GET", String::new(), 200),
        ("GET", format!("/{id}"), 200),
        ("DELETE", format!("/{id}"), 204),
    ] {
        let resp = http.handle(posts(method, &rest).into_request()).await;
        assert_eq!(resp.status(), status, "{method} {rest}");
    }
    let asked = recorded.take();
    let refused_http = refused(&h, "PublishHttpFunction", &asked);
    assert!(
        refused_http.is_empty(),
        "refused in AWS:\n{}",
        refused_http.join("\n")
    );

    // The run: publishes the first (its event), then a dead token fails a
    // second and marks the connection (its lifecycle event).
    assert_eq!(
        run.run(shared::continuation::Deadline::distant())
            .await
            .unwrap()
            .published,
        1
    );
    http.handle(posts("POST", "").json(&image).into_request())
        .await;
    h.stack.meta.invalidate_account(&account);
    assert_eq!(
        run.run(shared::continuation::Deadline::distant())
            .await
            .unwrap()
            .failed,
        1
    );
    let asked = recorded.take();
    assert_eq!(h.events("post.published").await.len(), 1);
    assert_eq!(h.events("connection.needs_reauth").await.len(), 1);
    assert!(actions(&asked).contains(&"dynamodb:UpdateItem"));
    let refused_run = refused(&h, "PublishFunction", &asked);
    assert!(
        refused_run.is_empty(),
        "refused in AWS:\n{}",
        refused_run.join("\n")
    );
}

/// `admin` and `deliver` on the harness's stack, their DynamoDB requests
/// recorded: a delivery queue and an endpoint key in moto, the environment
/// the template gives them (loopback allowed, so the endpoints can be local).
async fn outbound(
    h: &mut Harness,
    recorded: &Requests,
) -> (admin::Admin, std::sync::Arc<deliver::Deliver>, String) {
    let sqs = aws_sdk_sqs::Client::new(&h.stack.aws);
    let mut queues = Vec::new();
    for name in ["iam-deliveries", "iam-dead", "iam-slow"] {
        let q = sqs.create_queue().queue_name(name).send().await.unwrap();
        queues.push(q.queue_url().unwrap().to_string());
    }
    let key = h.stack.kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    for (k, v) in [
        ("ENDPOINT_KEY_ID", key_id.clone()),
        ("DELIVERY_QUEUE_URL", queues[0].clone()),
        ("DELIVERY_DEAD_LETTER_QUEUE_URL", queues[1].clone()),
        ("DELIVERY_SLOW_QUEUE_URL", queues[2].clone()),
        ("DELIVERY_MAX_DELAY_SECONDS", "0".into()),
        ("DELIVERY_ALLOW_LOOPBACK", "true".into()),
    ] {
        h.stack.env.insert(k.into(), v);
    }
    let env = || shared::EnvReader::from_map(h.stack.env.clone());
    let dynamodb = recorded.dynamodb(&h.stack.aws);
    let keys = || shared::vault::KmsDataKeys::new(h.stack.kms.clone(), &key_id);
    let admin = admin::Admin::new(
        shared::FromEnv::from_env(env()).unwrap(),
        &dynamodb,
        sqs.clone(),
        keys(),
        h.clock.clone(),
    );
    let deliver = deliver::Deliver::new(
        shared::FromEnv::from_env(env()).unwrap(),
        &dynamodb,
        sqs,
        keys(),
        shared::outbound::resolver::Lookup::System,
        h.clock.clone(),
    )
    .unwrap()
    .with_timeout(std::time::Duration::from_secs(1))
    .unwrap();
    (admin, std::sync::Arc::new(deliver), queues[0].clone())
}

#[tokio::test]
async fn admin_and_deliver_ask_dynamodb_only_what_their_roles_allow() {
    use serde_json::{json, Value};
    let mut h = Harness::new().await;
    let recorded = Requests::default();
    let (admin, deliver, queue) = outbound(&mut h, &recorded).await;
    let call = |req: ApiRequest| {
        let req = req.iam("arn:aws:iam::123456789012:role/backend-admin");
        async { admin.handle(req.into_request()).await }
    };
    // Every admin route: create, list, get, patch, rotate, attempts, replay
    // (dry run and started), delete.
    let body = json!({"url": "http://127.0.0.1:9/hook", "kinds": ["messages"]});
    let created = call(ApiRequest::post("/admin/endpoints").json(&body)).await;
    assert_eq!(created.status(), 201, "{}", created.body_text());
    let id = created.body_json()["id"].as_str().unwrap().to_string();
    let range = json!({"since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let mut dry = range.clone();
    dry["dry_run"] = json!(true);
    for (req, want) in [
        (ApiRequest::get("/admin/endpoints"), 200),
        (ApiRequest::get(&format!("/admin/endpoints/{id}")), 200),
        (
            ApiRequest::new("PATCH", &format!("/admin/endpoints/{id}"))
                .json(&json!({"description": "iam"})),
            200,
        ),
        (
            ApiRequest::post(&format!("/admin/endpoints/{id}/rotate-secret")),
            200,
        ),
        (
            ApiRequest::get(&format!("/admin/endpoints/{id}/attempts")),
            200,
        ),
        (ApiRequest::post("/admin/replays").json(&dry), 202),
        (ApiRequest::post("/admin/replays").json(&range), 202),
    ] {
        let resp = call(req).await;
        assert_eq!(resp.status(), want, "{}", resp.body_text());
    }
    let asked = recorded.take();
    let refused_admin = refused(&h, "AdminFunction", &asked);
    assert!(
        refused_admin.is_empty(),
        "admin refused in AWS:\n{}",
        refused_admin.join("\n")
    );

    // deliver: an event from the bus fans out; its attempt (to a closed
    // port) fails and is recorded; the replay job's page runs.
    let event = json!({"source": "ig-connect", "detail-type": "messages", "detail": {
        "eventName": "INSERT", "dynamodb": {"NewImage": {
            "event_id": {"S": "mid.iam"}, "kind": {"S": "messages"},
            "account_id": {"S": "1784"}, "occurred_at": {"S": "2026-11-21T11:00:00Z"},
            "received_at": {"S": "2026-11-21T11:00:00Z"}, "payload": {"S": "{}"}}}}});
    // Stored first, as the pipe forwards only what was stored (its attempt
    // reads it there).
    let image = event
        .pointer("/detail/dynamodb/NewImage")
        .unwrap()
        .as_object()
        .unwrap();
    let item = image.iter().map(|(k, v)| {
        let s = v["S"].as_str().unwrap().to_string();
        (
            k.clone(),
            shared::aws_sdk_dynamodb::types::AttributeValue::S(s),
        )
    });
    let put = h
        .stack
        .dynamodb
        .put_item()
        .table_name(h.stack.var("EVENTS_TABLE"));
    put.set_item(Some(item.collect())).send().await.unwrap();
    let record = |n: usize, body: String| json!({"messageId": format!("m{n}"), "receiptHandle": "r", "body": body});
    deliver
        .handle(json!({"Records": [record(0, event.to_string())]}))
        .await;
    let sqs = aws_sdk_sqs::Client::new(&h.stack.aws);
    let got = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<String> = got
        .messages()
        .iter()
        .filter_map(|m| m.body().map(String::from))
        .collect();
    assert!(
        bodies.len() >= 2,
        "an attempt and the replay's first page: {bodies:?}"
    );
    let records: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(n, b)| record(n + 1, b))
        .collect();
    deliver.handle(json!({"Records": records})).await;
    let asked = recorded.take();
    assert!(
        asked
            .iter()
            .any(|a| a.action == "dynamodb:PutItem" && a.table == h.stack.var("ENDPOINTS_TABLE")),
        "the failed attempt was recorded"
    );
    let attempts = call(ApiRequest::get(&format!("/admin/endpoints/{id}/attempts")))
        .await
        .body_json();
    assert_eq!(attempts["attempts"][0]["outcome"], "failed", "{attempts}");
    let refused_deliver = refused(&h, "DeliverFunction", &asked);
    assert!(
        refused_deliver.is_empty(),
        "deliver refused in AWS:\n{}",
        refused_deliver.join("\n")
    );
}
