//! What `template.yaml` deploys for Meta's routes: only under an unguessable
//! path segment, with throttles of their own, a webhook function with its own
//! capacity, and data deletion finished by a function of its own. Read from
//! the template itself, checked against the routes the local gateway serves
//! (`infra::apigw::ROUTES`).

use std::collections::BTreeSet;

use infra::apigw::{Door, ROUTES};
use infra::template::serde_yaml::value::{Tag, TaggedValue};
use infra::template::serde_yaml::Value;

fn template() -> Value {
    infra::template::document(&infra::template::template_path())
}

fn resource<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["Resources"]
        .get(id)
        .unwrap_or_else(|| panic!("resource {id}"))
}

fn resources_of_type<'a>(doc: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().unwrap(), r))
        .collect()
}

/// `!Ref name`, as the template writes it.
fn is_ref(v: &Value, name: &str) -> bool {
    match v {
        Value::Tagged(t) => t.tag == Tag::new("Ref") && t.value.as_str() == Some(name),
        Value::Mapping(m) => m.get("Ref").and_then(Value::as_str) == Some(name),
        _ => false,
    }
}

fn tagged_text(v: &Value) -> String {
    match v {
        Value::Tagged(t) => {
            let TaggedValue { tag, value } = t.as_ref();
            format!("{tag} {}", tagged_text(value))
        }
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn meta_route_keys() -> BTreeSet<String> {
    ROUTES
        .iter()
        .filter(|(_, _, door)| *door == Door::Meta)
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect()
}

#[test]
fn meta_routes_live_only_under_the_secret_path_segment() {
    let doc = template();
    let secret = &doc["Parameters"]["MetaPathSecret"];
    assert_eq!(secret["NoEcho"], Value::Bool(true), "never echoed");
    assert!(
        secret.get("Default").is_none(),
        "each deployment picks its own"
    );
    let pattern = secret["AllowedPattern"].as_str().unwrap();
    assert!(
        pattern.contains("{32,"),
        "at least 32 characters: {pattern}"
    );

    // Meta's API: routes are resources (no OpenAPI body), its only stage is
    // the secret.
    let api = resource(&doc, "MetaApi");
    assert_eq!(api["Type"].as_str(), Some("AWS::ApiGatewayV2::Api"));
    assert!(api["Properties"].get("Body").is_none());
    let stages: Vec<_> = resources_of_type(&doc, "AWS::ApiGatewayV2::Stage")
        .into_iter()
        .filter(|(_, s)| is_ref(&s["Properties"]["ApiId"], "MetaApi"))
        .collect();
    assert_eq!(stages.len(), 1, "one stage, no $default");
    let stage = &stages[0].1["Properties"];
    assert!(
        is_ref(&stage["StageName"], "MetaPathSecret"),
        "the stage is the secret: {:?}",
        stage["StageName"]
    );
    assert_eq!(stage["AutoDeploy"], Value::Bool(true));
    let log_format = stage["AccessLogSettings"]["Format"].as_str().unwrap();
    assert!(
        !log_format.contains("$context.path") && !log_format.contains("$context.stage"),
        "access logs never carry the secret"
    );

    let routes: BTreeSet<String> = resources_of_type(&doc, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .filter(|(_, r)| is_ref(&r["Properties"]["ApiId"], "MetaApi"))
        .map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(routes, meta_route_keys(), "the gateway's Meta routes");

    // None of them on the frontend API, where anyone can reach them.
    for (_, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let Some(events) = f["Properties"].get("Events").and_then(Value::as_mapping) else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let key = format!(
                "{} {}",
                e["Properties"]["Method"].as_str().unwrap(),
                e["Properties"]["Path"].as_str().unwrap()
            );
            assert!(!meta_route_keys().contains(&key), "{key} is public");
            assert!(
                ROUTES
                    .iter()
                    .any(|(m, p, d)| format!("{m} {p}") == key && *d != Door::Meta),
                "{key} is a frontend route of the gateway"
            );
        }
    }

    // The permission lets only this API invoke the webhook function.
    let permission = resource(&doc, "MetaApiInvokesWebhook");
    assert!(tagged_text(&permission["Properties"]["SourceArn"]).contains("${MetaApi}"));
}

#[test]
fn meta_and_frontend_routes_have_throttles_of_their_own() {
    let doc = template();
    let params = &doc["Parameters"];
    let number = |name: &str| {
        params[name]["Default"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}"))
    };

    // Every Meta route has its own setting; Meta's deliveries the most.
    let stage = &resource(&doc, "MetaApiStage")["Properties"];
    let settings = stage["RouteSettings"].as_mapping().unwrap();
    let keys: BTreeSet<String> = settings
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, meta_route_keys());
    for (key, s) in settings {
        let (rate, burst) = if key.as_str() == Some("POST /webhook") {
            ("WebhookRateLimit", "WebhookBurstLimit")
        } else {
            ("MetaCallbackRateLimit", "MetaCallbackBurstLimit")
        };
        assert!(is_ref(&s["ThrottlingRateLimit"], rate), "{key:?}");
        assert!(is_ref(&s["ThrottlingBurstLimit"], burst), "{key:?}");
    }
    assert!(is_ref(
        &stage["DefaultRouteSettings"]["ThrottlingRateLimit"],
        "MetaCallbackRateLimit"
    ));
    assert!(
        number("WebhookRateLimit") >= 100
            && number("WebhookBurstLimit") >= number("WebhookRateLimit")
    );
    assert!(number("MetaCallbackRateLimit") < number("WebhookRateLimit"));

    // The frontend API: its own parameters, nothing shared with Meta's.
    let frontend = &resource(&doc, "HttpApi")["Properties"]["DefaultRouteSettings"];
    assert!(is_ref(
        &frontend["ThrottlingRateLimit"],
        "FrontendRateLimit"
    ));
    assert!(is_ref(
        &frontend["ThrottlingBurstLimit"],
        "FrontendBurstLimit"
    ));
}

#[test]
fn the_webhook_function_has_capacity_of_its_own_and_no_kms() {
    let doc = template();
    let webhook = &resource(&doc, "WebhookFunction")["Properties"];
    assert!(is_ref(
        &webhook["ReservedConcurrentExecutions"],
        "WebhookReservedConcurrency"
    ));
    assert!(
        doc["Parameters"]["WebhookReservedConcurrency"]["Default"]
            .as_u64()
            .unwrap()
            >= 10
    );
    assert!(webhook.get("Events").is_none(), "its routes are MetaApi's");
    let env = &webhook["Environment"]["Variables"];
    assert!(is_ref(
        &env["DATA_DELETION_FUNCTION"],
        "DataDeletionFunction"
    ));
    assert!(tagged_text(&env["META_BASE_URL"]).contains("${MetaApi}"));

    for id in ["WebhookFunction", "DataDeletionFunction"] {
        let policies = format!("{:?}", resource(&doc, id)["Properties"]["Policies"]);
        assert!(!policies.contains("kms:"), "{id} holds no KMS right");
    }
}

#[test]
fn data_deletion_is_finished_by_a_retried_dead_lettered_function() {
    let doc = template();
    let f = &resource(&doc, "DataDeletionFunction");
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("data-deletion")
    );
    let invoke = &f["Properties"]["EventInvokeConfig"];
    assert!(invoke["MaximumRetryAttempts"].as_u64().unwrap() >= 1);
    assert_eq!(
        invoke["DestinationConfig"]["OnFailure"]["Type"].as_str(),
        Some("SQS")
    );
    // It continues itself; deletion records expire.
    let continues = format!("{:?}", resource(&doc, "DataDeletionContinues"));
    assert!(
        continues.contains("lambda:InvokeFunction") && continues.contains("DataDeletionFunction")
    );
    let ttl = &resource(&doc, "ConnectionsTable")["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["AttributeName"].as_str(), Some("expires_at"));
    assert_eq!(ttl["Enabled"], Value::Bool(true));
}

#[test]
fn the_refresh_continues_itself_at_the_concurrency_the_costs_were_measured_at() {
    let doc = template();
    // A run out of time invokes the function again for the rest: its role may.
    let continues = resource(&doc, "RefreshContinues");
    assert!(is_ref(
        &continues["Properties"]["Roles"][0],
        "RefreshFunctionRole"
    ));
    let statement = &continues["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Action"].as_str(), Some("lambda:InvokeFunction"));
    assert_eq!(
        tagged_text(&statement["Resource"]),
        "!GetAtt RefreshFunction.Arn"
    );
    // docs/benchmarks.md's daily figures assume 64 in flight and 300 s runs.
    assert_eq!(
        doc["Parameters"]["RefreshConcurrency"]["Default"].as_u64(),
        Some(64)
    );
    let refresh = resource(&doc, "RefreshFunction");
    assert_eq!(refresh["Properties"]["Timeout"].as_u64(), Some(300));
}

/// The metric names each function writes, read from the code's own EMF
/// documents (so an alarm on a name nobody emits fails here).
fn emitted(function: &str) -> BTreeSet<String> {
    let docs = match function {
        "webhook" => vec![webhook::delivery::Delivery::Stored {
            new: 1,
            duplicates: 0,
        }
        .metrics()
        .document(0)],
        "refresh" => vec![refresh::Summary::default().metrics().document(0)],
        "callback" => {
            vec![callback::decide::connect_metrics(shared::Provider::Instagram, Ok(1)).document(0)]
        }
        "deliver" => return deliver::METRICS.iter().map(|s| s.to_string()).collect(),
        "graph" => {
            return graph::CALL_METRICS
                .iter()
                .chain(&["KmsCalls", "KmsErrors"])
                .map(|s| s.to_string())
                .collect()
        }
        other => panic!("no metrics known for {other}"),
    };
    let kms = ["callback", "refresh"].contains(&function).then(|| {
        shared::vault::KmsUsage::default()
            .add_to(shared::metrics::Metrics::new("x"))
            .document(0)
    });
    docs.iter()
        .chain(kms.iter())
        .flat_map(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn alarms_watch_metrics_the_functions_emit_and_reach_someone() {
    let doc = template();
    let alarms = resources_of_type(&doc, "AWS::CloudWatch::Alarm");
    let mut ours = BTreeSet::new();
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        // Metric math: each metric it reads must be one a function writes.
        if let Some(metrics) = p["Metrics"].as_sequence() {
            for m in metrics {
                let Some(stat) = m.get("MetricStat") else {
                    continue;
                };
                let metric = &stat["Metric"];
                assert_eq!(
                    metric["Namespace"].as_str(),
                    Some(shared::metrics::NAMESPACE)
                );
                let dims = metric["Dimensions"].as_sequence().unwrap();
                let function = dims[0]["Value"].as_str().unwrap();
                let name = metric["MetricName"].as_str().unwrap();
                assert!(
                    emitted(function).contains(name),
                    "{id}: {function} emits no {name}"
                );
                ours.insert(name.to_string());
            }
            assert!(
                tagged_text(&p["AlarmActions"]).contains("AlarmTopic"),
                "{id}"
            );
            continue;
        }
        if p["Namespace"].as_str() != Some(shared::metrics::NAMESPACE) {
            continue;
        }
        let dims = p["Dimensions"].as_sequence().unwrap();
        assert_eq!(
            dims.len(),
            1,
            "{id}: by function only, as the EMF documents are"
        );
        assert_eq!(dims[0]["Name"].as_str(), Some("function"), "{id}");
        let function = dims[0]["Value"].as_str().unwrap();
        let metric = p["MetricName"].as_str().unwrap();
        assert!(
            emitted(function).contains(metric),
            "{id}: {function} emits no {metric}"
        );
        assert!(
            tagged_text(&p["AlarmActions"]).contains("AlarmTopic"),
            "{id} notifies the alarm topic"
        );
        ours.insert(metric.to_string());
    }
    for metric in [
        "Retried",
        "BadSignature",
        "WebhooksRestored",
        "NeedsReauth",
        "Answers5xx",
        "MetaThrottled",
        "KmsErrors",
    ] {
        assert!(ours.contains(metric), "an alarm on {metric}");
    }
    // CloudWatch can publish only to a topic whose key lets it.
    let topic = resource(&doc, "AlarmTopic");
    assert!(is_ref(
        &topic["Properties"]["KmsMasterKeyId"],
        "AlarmTopicKey"
    ));
    let policy = format!(
        "{:?}",
        resource(&doc, "AlarmTopicKey")["Properties"]["KeyPolicy"]
    );
    assert!(policy.contains("cloudwatch.amazonaws.com") && policy.contains("kms:GenerateDataKey*"));
}

#[test]
fn the_graph_proxy_may_open_tokens_only_with_their_context_and_touch_little_else() {
    let doc = template();
    // Both doors: the same binary and the same permissions.
    let http = resource(&doc, "GraphHttpFunction");
    let f = resource(&doc, "GraphFunction");
    assert_eq!(
        http["Properties"]["Policies"], f["Properties"]["Policies"],
        "the doors differ only in who may invoke them"
    );
    graph_function_is_narrow(f);
    graph_function_is_narrow(http);
    // The HTTP door's three routes are behind the JWT authorizer; the
    // backend door is the output ARN and has no route.
    let events = http["Properties"]["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 3);
    for (_, e) in events {
        assert_eq!(
            e["Properties"]["Path"].as_str(),
            Some("/connections/{provider}/{account_id}/graph/{path+}")
        );
        assert_eq!(
            e["Properties"]["Auth"]["Authorizer"].as_str(),
            Some("FrontendJwt")
        );
    }
    assert!(f["Properties"].get("Events").is_none());
    assert_eq!(
        tagged_text(&doc["Outputs"]["GraphFunctionArn"]["Value"]),
        "!GetAtt GraphFunction.Arn"
    );
}

/// Each door reads only its own shape (`GRAPH_DOOR`), and only the named
/// roles may invoke the backend's.
#[test]
fn the_graph_doors_are_separate_functions_each_with_its_invokers() {
    let doc = template();
    let door = |id: &str| {
        resource(&doc, id)["Properties"]["Environment"]["Variables"]["GRAPH_DOOR"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(door("GraphHttpFunction").as_deref(), Some("http"));
    assert_eq!(door("GraphFunction").as_deref(), Some("invoke"));
    let invokers = &doc["Parameters"]["GraphInvokers"];
    assert_eq!(invokers["Type"].as_str(), Some("CommaDelimitedList"));
    assert_eq!(invokers["Default"].as_str(), Some(""));
    let permissions: Vec<_> = resources_of_type(&doc, "AWS::Lambda::Permission")
        .into_iter()
        .filter(|(_, p)| tagged_text(&p["Properties"]["FunctionName"]).contains("GraphFunction"))
        .collect();
    assert_eq!(permissions.len(), 3);
    for (id, p) in permissions {
        assert_eq!(
            tagged_text(&p["Properties"]["FunctionName"]),
            "!GetAtt GraphFunction.Arn",
            "{id}: only the backend door"
        );
        assert!(p["Condition"]
            .as_str()
            .unwrap()
            .starts_with("HasGraphInvoker"));
        assert!(tagged_text(&p["Properties"]["Principal"]).contains("GraphInvokers"));
    }
}

fn graph_function_is_narrow(f: &Value) {
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("graph")
    );
    let statements = f["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap();
    let actions = |s: &Value| -> Vec<String> {
        match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Sequence(v) => v.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("{other:?}"),
        }
    };
    let all: Vec<String> = statements.iter().flat_map(actions).collect();
    // No listing of anyone's connections, no scans, no key generation.
    for never in [
        "dynamodb:Query",
        "dynamodb:Scan",
        "kms:GenerateDataKey",
        "kms:Encrypt",
        "dynamodb:BatchGetItem",
    ] {
        assert!(!all.iter().any(|a| a == never), "{never} in {all:?}");
    }
    for s in statements {
        let acts = actions(s);
        let resource = tagged_text(&s["Resource"]);
        if acts.iter().any(|a| a == "kms:Decrypt") {
            assert_eq!(acts, ["kms:Decrypt"]);
            assert_eq!(
                s["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"].as_str(),
                Some("connection-token"),
                "only with the token's encryption context"
            );
        }
        if acts.iter().any(|a| a == "dynamodb:UpdateItem") && resource.contains("ConnectionsTable")
        {
            let attrs = &s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"];
            let attrs: Vec<&str> = attrs
                .as_sequence()
                .expect("connection updates limited to named attributes")
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            for never in [
                "token",
                "sealed_token",
                "ciphertext",
                "user_id",
                "account_id",
            ] {
                assert!(!attrs.contains(&never), "{never} writable: {attrs:?}");
            }
            assert!(attrs.contains(&"status"));
        }
    }
}

#[test]
fn state_survives_mistakes_and_every_checkov_skip_says_why() {
    let doc = template();
    for table in ["ConnectionsTable", "EventsTable"] {
        let t = resource(&doc, table);
        assert_eq!(t["DeletionPolicy"].as_str(), Some("Retain"), "{table}");
        let p = &t["Properties"];
        assert_eq!(p["DeletionProtectionEnabled"], Value::Bool(true), "{table}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            Value::Bool(true),
            "{table}"
        );
    }
    // The key that opens the stored tokens outlives the stack, as they do.
    let key = resource(&doc, "TokenKey");
    assert_eq!(key["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(key["Properties"]["EnableKeyRotation"], Value::Bool(true));
    assert!(key["Properties"]["PendingWindowInDays"].as_u64().unwrap() >= 7);
    // Every log group has a retention.
    for (id, group) in resources_of_type(&doc, "AWS::Logs::LogGroup") {
        assert!(
            group["Properties"].get("RetentionInDays").is_some(),
            "{id} keeps logs forever"
        );
    }
    // A suppressed checkov finding carries its reason.
    let mut skipped = 0;
    for (id, r) in doc["Resources"].as_mapping().unwrap() {
        let Some(skips) = r["Metadata"]["checkov"]["skip"].as_sequence() else {
            continue;
        };
        for skip in skips {
            let check = skip["id"].as_str().unwrap_or_default();
            assert!(check.starts_with("CKV_"), "{id:?}: {skip:?}");
            let why = skip["comment"].as_str().unwrap_or_default();
            assert!(why.len() >= 20, "{id:?} skips {check} without a reason");
            skipped += 1;
        }
    }
    assert!(skipped > 0);
}

#[test]
fn new_events_also_reach_an_event_bus_with_their_kind_as_detail_type() {
    let doc = template();
    let pipe = resource(&doc, "EventsPipe");
    assert_eq!(pipe["Type"].as_str(), Some("AWS::Pipes::Pipe"));
    let p = &pipe["Properties"];
    assert_eq!(tagged_text(&p["Source"]), "!GetAtt EventsTable.StreamArn");
    assert_eq!(tagged_text(&p["Target"]), "!GetAtt EventBus.Arn");
    let bus = &p["TargetParameters"]["EventBridgeEventBusParameters"];
    assert_eq!(bus["Source"].as_str(), Some("ig-connect"));
    // The kind attribute the events table's items carry (shared::store::events).
    assert_eq!(
        bus["DetailType"].as_str(),
        Some("$.dynamodb.NewImage.kind.S")
    );
    let source = &p["SourceParameters"];
    let filter = source["FilterCriteria"]["Filters"][0]["Pattern"]
        .as_str()
        .unwrap();
    let filter: serde_json::Value = serde_json::from_str(filter).unwrap();
    assert_eq!(
        filter,
        serde_json::json!({"eventName": ["INSERT"]}),
        "new events only, not TTL removals"
    );
    let stream = &source["DynamoDBStreamParameters"];
    assert!(stream["MaximumRetryAttempts"].as_u64().unwrap() > 0);
    assert_eq!(
        tagged_text(&stream["DeadLetterConfig"]["Arn"]),
        "!GetAtt EventsPipeDeadLetters.Arn"
    );
    // The stream stays for direct consumers, with the image they read.
    let events = resource(&doc, "EventsTable");
    assert_eq!(
        events["Properties"]["StreamSpecification"]["StreamViewType"].as_str(),
        Some("NEW_IMAGE")
    );
    assert!(doc["Outputs"].get("EventsStreamArn").is_some());
    assert!(doc["Outputs"].get("EventBusName").is_some());
    // The pipe may read the stream and put on the bus, nothing else.
    let role = format!(
        "{:?}",
        resource(&doc, "EventsPipeRole")["Properties"]["Policies"]
    );
    assert!(role.contains("events:PutEvents") && role.contains("dynamodb:GetRecords"));
    assert!(!role.contains("dynamodb:PutItem") && !role.contains("\"*\""));
}

/// Every statement of a function's inline policy that allows `action` on
/// `table`, with its `dynamodb:LeadingKeys` patterns (`None`: unrestricted).
fn leading_keys(
    doc: &Value,
    function: &str,
    action: &str,
    table: &str,
) -> Vec<Option<Vec<String>>> {
    let statements = resource(doc, function)["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap();
    statements
        .iter()
        .filter(|s| {
            let actions = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Sequence(v) => v.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
                _ => vec![],
            };
            let resource = tagged_text(&s["Resource"]);
            actions.iter().any(|a| a == action)
                && resource.contains(&format!("{table}.Arn"))
                && !resource.contains("index")
        })
        .map(|s| {
            s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                .as_sequence()
                .map(|v| v.iter().map(|k| k.as_str().unwrap().to_string()).collect())
        })
        .collect()
}

#[test]
fn meta_facing_functions_cannot_write_owner_claims_or_page_routing() {
    let doc = template();
    for (function, action) in [
        ("WebhookFunction", "dynamodb:UpdateItem"),
        ("WebhookFunction", "dynamodb:PutItem"),
        ("DataDeletionFunction", "dynamodb:UpdateItem"),
    ] {
        let grants = leading_keys(&doc, function, action, "ConnectionsTable");
        assert!(!grants.is_empty(), "{function} may {action}");
        for keys in grants {
            let keys = keys.unwrap_or_else(|| panic!("{function} {action} on any key"));
            for k in &keys {
                assert!(
                    !k.starts_with("ACCOUNT#") && !k.starts_with("PAGE#") && k != "*",
                    "{function} may {action} {k}"
                );
            }
        }
    }
    for action in ["dynamodb:DeleteItem", "dynamodb:BatchWriteItem"] {
        assert!(
            leading_keys(&doc, "WebhookFunction", action, "ConnectionsTable").is_empty(),
            "the webhook function may not {action} connections"
        );
    }
}

/// `METHOD /path` of every operation in docs/openapi.yaml, with the Graph
/// route's greedy parameter written as API Gateway writes it.
fn openapi_routes() -> BTreeSet<String> {
    let path = infra::template::template_path()
        .parent()
        .unwrap()
        .join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    let doc: Value = infra::template::serde_yaml::from_str(&text).expect("it parses");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let mut routes = BTreeSet::new();
    for (p, item) in doc["paths"].as_mapping().unwrap() {
        let p = p
            .as_str()
            .unwrap()
            .replace("/graph/{path}", "/graph/{path+}");
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                routes.insert(format!("{} {p}", method.to_uppercase()));
            }
        }
    }
    routes
}

/// `METHOD /path` of every route the template deploys, on either API.
fn template_routes(doc: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (_, f) in resources_of_type(doc, "AWS::Serverless::Function") {
        let Some(events) = f["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() == Some("HttpApi") {
                let p = &e["Properties"];
                routes.insert(format!(
                    "{} {}",
                    p["Method"].as_str().unwrap().to_uppercase(),
                    p["Path"].as_str().unwrap()
                ));
            }
        }
    }
    for (_, r) in resources_of_type(doc, "AWS::ApiGatewayV2::Route") {
        routes.insert(r["Properties"]["RouteKey"].as_str().unwrap().to_string());
    }
    routes
}

#[test]
fn the_openapi_document_describes_exactly_the_deployed_routes() {
    let documented = openapi_routes();
    assert_eq!(documented.len(), ROUTES.len());
    let deployed = template_routes(&template());
    assert_eq!(
        documented, deployed,
        "docs/openapi.yaml and template.yaml differ"
    );
    let local: BTreeSet<String> = ROUTES.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(
        documented, local,
        "docs/openapi.yaml and the local gateway differ"
    );
}

#[test]
fn every_alarm_has_a_runbook_section() {
    let doc = template();
    let runbook = std::fs::read_to_string(
        infra::template::template_path()
            .parent()
            .unwrap()
            .join("docs/runbook.md"),
    )
    .expect("docs/runbook.md");
    let alarms = resources_of_type(&doc, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 10);
    for (id, alarm) in alarms {
        assert!(
            runbook.contains(&format!("## {id}")),
            "docs/runbook.md has no section for {id}"
        );
        assert!(
            alarm["Properties"]["AlarmDescription"]
                .as_str()
                .is_some_and(|d| d.len() > 20),
            "{id} says what it means"
        );
    }
}

#[test]
fn only_the_functions_that_seal_or_open_tokens_may_use_the_key() {
    let doc = template();
    let statements = resource(&doc, "TokenKey")["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let deny = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"].as_str() == Some(sid))
            .unwrap_or_else(|| panic!("statement {sid}"))
            .clone()
    };
    let context = deny("CryptoOnlyWithTokenContext");
    assert_eq!(context["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        context["Condition"]["StringNotEquals"]["kms:EncryptionContext:purpose"].as_str(),
        Some("connection-token")
    );
    let roles = deny("CryptoOnlyForTokenFunctions");
    assert_eq!(roles["Effect"].as_str(), Some("Deny"));
    let actions = format!("{:?}", roles["Action"]);
    assert!(actions.contains("kms:Decrypt") && actions.contains("kms:GenerateDataKey*"));
    assert_eq!(
        roles["Condition"]["StringNotEquals"]["aws:PrincipalTag/ig-connect-token-access"].as_str(),
        Some("true")
    );
    // The tag is on exactly the functions that need the key, propagated to
    // their roles (scripts/check_role_tags.py checks SAM's translation).
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        let tagged = p["Tags"]["ig-connect-token-access"].as_str() == Some("true");
        let wants = [
            "CallbackFunction",
            "RefreshFunction",
            "GraphFunction",
            "GraphHttpFunction",
        ]
        .contains(&id);
        assert_eq!(tagged, wants, "{id}");
        if wants {
            assert_eq!(p["PropagateTags"], Value::Bool(true), "{id}");
        }
    }
}

#[test]
fn outbound_webhooks_wait_in_a_queue_fed_by_the_bus_and_sign_with_a_key_of_their_own() {
    let doc = template();
    // The bus's events reach the delivery queue, and only that rule may send.
    let rule = &resource(&doc, "DeliveryRule")["Properties"];
    assert!(is_ref(&rule["EventBusName"], "EventBus"));
    assert_eq!(
        rule["EventPattern"]["source"][0].as_str(),
        Some("ig-connect")
    );
    assert!(tagged_text(&rule["Targets"][0]["Arn"]).contains("DeliveryQueue"));
    let rule_dlq = &rule["Targets"][0]["DeadLetterConfig"]["Arn"];
    assert!(tagged_text(rule_dlq).contains("DeliveryDeadLetters"));
    let policy = &resource(&doc, "DeliveryQueuePolicy")["Properties"]["PolicyDocument"];
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"].as_str(),
        Some("events.amazonaws.com")
    );
    assert!(
        tagged_text(&statement["Condition"]["ArnEquals"]["aws:SourceArn"]).contains("DeliveryRule")
    );
    let queue = &resource(&doc, "DeliveryQueue")["Properties"];
    assert!(
        tagged_text(&queue["RedrivePolicy"]["deadLetterTargetArn"]).contains("DeliveryDeadLetters")
    );

    // deliver reports partial batch failures; the queue outlasts its timeout.
    let deliver = &resource(&doc, "DeliverFunction")["Properties"];
    let source = &deliver["Events"]["Deliveries"];
    assert_eq!(source["Type"].as_str(), Some("SQS"));
    assert_eq!(
        source["Properties"]["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let timeout = deliver["Timeout"].as_u64().unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);

    // Every admin route is IAM-authorized; nothing sets the loopback allowance.
    let admin = &resource(&doc, "AdminFunction")["Properties"];
    let routes = admin["Events"].as_mapping().unwrap();
    assert_eq!(routes.len(), 9);
    for (_, e) in routes {
        assert_eq!(
            e["Properties"]["Auth"]["Authorizer"].as_str(),
            Some("AWS_IAM")
        );
    }
    assert_eq!(
        resource(&doc, "HttpApi")["Properties"]["Auth"]["EnableIamAuthorizer"],
        Value::Bool(true)
    );
    let text = std::fs::read_to_string(infra::template::template_path()).unwrap();
    assert!(!text.contains("DELIVERY_ALLOW_LOOPBACK"));

    // Endpoint secrets: their own key, usable only with their own context by
    // the two tagged functions; neither function may touch the token key.
    let key = format!(
        "{:?}",
        resource(&doc, "EndpointSecretKey")["Properties"]["KeyPolicy"]
    );
    assert!(key.contains("webhook-endpoint-secret") && key.contains("ig-connect-endpoint-secrets"));
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let tagged =
            f["Properties"]["Tags"]["ig-connect-endpoint-secrets"].as_str() == Some("true");
        assert_eq!(
            tagged,
            ["AdminFunction", "DeliverFunction"].contains(&id),
            "{id}"
        );
    }
    for id in ["AdminFunction", "DeliverFunction"] {
        let policies = format!("{:?}", resource(&doc, id)["Properties"]["Policies"]);
        assert!(
            !policies.contains("TokenKey") && !policies.contains("ConnectionsTable"),
            "{id}"
        );
        assert!(policies.contains("webhook-endpoint-secret"), "{id}");
    }
    let admin_policies = format!("{:?}", admin["Policies"]);
    assert!(
        !admin_policies.contains("kms:Decrypt"),
        "admin seals, never opens"
    );
}
