//! What `template.yaml` deploys for Meta's routes: only under an unguessable
//! path segment, with throttles of their own, a webhook function with its own
//! capacity, and data deletion finished by a function of its own. Read from
//! the template itself, checked against the routes the local gateway serves
//! (`infra::apigw::ROUTES`).

use std::collections::BTreeSet;

use infra::apigw::{Door, ROUTES};
use infra::template::yaml_serde::value::{Tag, TaggedValue};
use infra::template::yaml_serde::Value;

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
fn the_deletion_status_page_is_public_and_floods_on_meta_routes_raise_an_alarm() {
    let doc = template();
    // On the public API, with a throttle of its own; not on Meta's API.
    let route = "GET /meta/data-deletion/{code}";
    assert!(!meta_route_keys().contains(route));
    let settings = &resource(&doc, "HttpApi")["Properties"]["RouteSettings"][route];
    assert!(is_ref(
        &settings["ThrottlingRateLimit"],
        "DeletionStatusRateLimit"
    ));
    assert!(is_ref(
        &settings["ThrottlingBurstLimit"],
        "DeletionStatusBurstLimit"
    ));
    let params = &doc["Parameters"];
    assert!(
        params["DeletionStatusRateLimit"]["Default"]
            .as_u64()
            .unwrap()
            <= params["FrontendRateLimit"]["Default"].as_u64().unwrap()
    );

    // Throttled floods never reach Lambda: API Gateway's own 4xx count on
    // Meta's API raises the alarm, by API id only (the stage is the secret).
    let stage = &resource(&doc, "MetaApiStage")["Properties"];
    assert_eq!(
        stage["DefaultRouteSettings"]["DetailedMetricsEnabled"],
        Value::Bool(true),
        "per-route metrics on Meta's API"
    );
    let alarm = &resource(&doc, "MetaApiClientErrorsAlarm")["Properties"];
    assert_eq!(alarm["Namespace"].as_str(), Some("AWS/ApiGateway"));
    assert_eq!(alarm["MetricName"].as_str(), Some("4xx"));
    let dimensions = alarm["Dimensions"].as_sequence().unwrap();
    assert_eq!(dimensions.len(), 1);
    assert_eq!(dimensions[0]["Name"].as_str(), Some("ApiId"));
    assert!(is_ref(&dimensions[0]["Value"], "MetaApi"));
    assert!(is_ref(
        &alarm["Threshold"],
        "MetaApiClientErrorsAlarmThreshold"
    ));
    assert!(!format!("{dimensions:?}").contains("MetaPathSecret"));
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
    // Meta's routes are MetaApi's; its one public route is the status page.
    let events = webhook["Events"].as_mapping().unwrap();
    let public: Vec<String> = events
        .values()
        .map(|e| {
            assert_eq!(e["Type"].as_str(), Some("HttpApi"));
            assert!(is_ref(&e["Properties"]["ApiId"], "HttpApi"));
            let p = &e["Properties"];
            format!(
                "{} {}",
                p["Method"].as_str().unwrap(),
                p["Path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(public, ["GET /meta/data-deletion/{code}"]);
    let env = &webhook["Environment"]["Variables"];
    assert!(is_ref(
        &env["DATA_DELETION_FUNCTION"],
        "DataDeletionFunction"
    ));
    assert!(
        env.get("META_BASE_URL").is_none(),
        "no URL it hands out is on Meta's API"
    );

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
fn data_deletion_may_find_and_delete_the_proxys_stored_answers_and_nothing_more() {
    let doc = template();
    // A sparse keys-only index of the proxy's table lists an account's
    // idempotency records.
    let table = &resource(&doc, "GraphTable")["Properties"];
    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    let by_account = indexes
        .iter()
        .find(|i| i["IndexName"].as_str() == Some("by_account"))
        .expect("GraphTable's by_account index");
    assert_eq!(
        by_account["KeySchema"][0]["AttributeName"].as_str(),
        Some("account_key")
    );
    assert_eq!(
        by_account["Projection"]["ProjectionType"].as_str(),
        Some("KEYS_ONLY")
    );

    let f = &resource(&doc, "DataDeletionFunction")["Properties"];
    assert!(is_ref(
        &f["Environment"]["Variables"]["GRAPH_TABLE"],
        "GraphTable"
    ));
    let on_graph: Vec<(String, String)> = f["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|s| tagged_text(&s["Resource"]).contains("GraphTable"))
        .map(|s| (format!("{:?}", s["Action"]), tagged_text(&s["Resource"])))
        .collect();
    assert_eq!(on_graph.len(), 2, "{on_graph:?}");
    for (actions, resource) in &on_graph {
        if actions.contains("dynamodb:Query") {
            assert!(resource.ends_with("/index/by_account"), "{resource}");
        } else {
            assert!(actions.contains("dynamodb:DeleteItem"), "{actions}");
        }
        for never in ["PutItem", "UpdateItem", "GetItem", "BatchWriteItem", "Scan"] {
            assert!(!actions.contains(never), "{never} on the proxy's table");
        }
    }
    assert_eq!(
        leading_keys(
            &doc,
            "DataDeletionFunction",
            "dynamodb:DeleteItem",
            "GraphTable"
        ),
        [Some(vec!["IDEM#*".to_string()])],
        "only idempotency records"
    );
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
        "publish" => vec![publish::RunSummary::default().metrics().document(0)],
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
    let kms = ["callback", "refresh", "publish"]
        .contains(&function)
        .then(|| {
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
        // Its Decrypt, only with the token's encryption context, is granted
        // by TokenKey's policy (only_the_roles_of_the_functions_that_seal_or_
        // open_tokens_may_use_the_key).
        assert!(!acts.iter().any(|a| a.starts_with("kms:")), "{acts:?}");
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
    let doc: Value = infra::template::yaml_serde::from_str(&text).expect("it parses");
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

/// A key's policy read as IAM would: the roles its `roles_sid` Deny names by
/// `aws:PrincipalArn` (everyone else is refused any crypto), and each
/// "<principal> <action>" its Allow statements grant, each checked to hold
/// only with the encryption context `purpose`.
fn key_policy(
    doc: &Value,
    key: &str,
    roles_sid: &str,
    purpose: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let statements = resource(doc, key)["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let statement = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"].as_str() == Some(sid))
            .unwrap_or_else(|| panic!("{key}: statement {sid}"))
            .clone()
    };
    let roles = statement(roles_sid);
    assert_eq!(roles["Effect"].as_str(), Some("Deny"));
    let actions = format!("{:?}", roles["Action"]);
    assert!(actions.contains("kms:Decrypt") && actions.contains("kms:GenerateDataKey*"));
    let named = roles["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        .as_sequence()
        .expect("the roles, by aws:PrincipalArn")
        .iter()
        .map(tagged_text)
        .collect();
    // A tag anyone with iam:TagRole can set opens nothing.
    let policy = format!("{statements:?}");
    assert!(!policy.contains("PrincipalTag"), "{policy}");
    let mut granted = BTreeSet::new();
    for s in statements
        .iter()
        .filter(|s| s["Effect"].as_str() == Some("Allow"))
    {
        let principal = tagged_text(&s["Principal"]["AWS"]);
        if principal.contains(":root") {
            continue;
        }
        assert_eq!(
            s["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"].as_str(),
            Some(purpose),
            "{principal}"
        );
        let actions: Vec<String> = match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Sequence(v) => v.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("{other:?}"),
        };
        for a in actions {
            granted.insert(format!("{principal} {a}"));
        }
    }
    (named, granted)
}

/// `"Function kms:Action"` as `"!GetAtt FunctionFunctionRole.Arn kms:Action"`.
fn role_grants(grants: &[&str]) -> BTreeSet<String> {
    grants
        .iter()
        .map(|g| {
            let (f, a) = g.split_once(' ').unwrap();
            format!("!GetAtt {f}FunctionRole.Arn {a}")
        })
        .collect()
}

#[test]
fn only_the_roles_of_the_functions_that_seal_or_open_tokens_may_use_the_key() {
    let doc = template();
    let statements = resource(&doc, "TokenKey")["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let context = statements
        .iter()
        .find(|s| s["Sid"].as_str() == Some("CryptoOnlyWithTokenContext"))
        .expect("CryptoOnlyWithTokenContext");
    assert_eq!(context["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        context["Condition"]["StringNotEquals"]["kms:EncryptionContext:purpose"].as_str(),
        Some("connection-token")
    );
    // Everyone but the four roles, named by ARN, is refused any crypto; what
    // each may do is granted in the key policy, only with the token's context.
    let (named, granted) = key_policy(
        &doc,
        "TokenKey",
        "CryptoOnlyForTokenFunctions",
        "connection-token",
    );
    let want: BTreeSet<String> = ["Callback", "Refresh", "Graph", "GraphHttp", "Publish"]
        .iter()
        .map(|f| format!("!GetAtt {f}FunctionRole.Arn"))
        .collect();
    assert_eq!(named, want);
    let expected = role_grants(&[
        "Callback kms:GenerateDataKey",
        "Refresh kms:Decrypt",
        "Refresh kms:GenerateDataKey",
        "Graph kms:Decrypt",
        "GraphHttp kms:Decrypt",
        "Publish kms:Decrypt",
    ]);
    assert_eq!(granted, expected);
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        assert!(
            f["Properties"].get("Tags").is_none(),
            "{id} carries tags: the key trusts none"
        );
        let policies = format!("{:?}", f["Properties"]["Policies"]);
        assert!(!policies.contains("kms:"), "{id}'s role names KMS itself");
    }
}

#[test]
fn the_readme_says_what_the_key_policy_guarantees_and_not_more() {
    let root = infra::template::template_path();
    let readme = std::fs::read_to_string(root.parent().unwrap().join("README.md")).unwrap();
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !flat.contains("not an administrator"),
        "an administrator can change the key policy"
    );
    assert!(
        flat.contains("aws:PrincipalArn"),
        "README names the mechanism"
    );
}

/// Whether `key` matches an IAM `StringLike` pattern (a trailing `*` only,
/// which is all the template uses).
fn like(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => key == pattern,
    }
}

/// The `ForAllValues:StringEquals` `dynamodb:Attributes` of every statement
/// of a function's inline policy that allows `action` on `table`.
fn attributes(doc: &Value, function: &str, action: &str, table: &str) -> Vec<Option<Vec<String>>> {
    resource(doc, function)["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|s| {
            let acts = format!("{:?}", s["Action"]);
            acts.contains(&format!("\"{action}\""))
                && tagged_text(&s["Resource"]).contains(&format!("{table}.Arn"))
        })
        .map(|s| {
            s["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
                .as_sequence()
                .map(|v| v.iter().map(|k| k.as_str().unwrap().to_string()).collect())
        })
        .collect()
}

/// The one grant of `action` on `table`, its `LeadingKeys` patterns.
fn only_grant(doc: &Value, function: &str, action: &str, table: &str) -> Vec<String> {
    let grants = leading_keys(doc, function, action, table);
    assert_eq!(
        grants.len(),
        1,
        "{function} {action} on {table}: {grants:?}"
    );
    grants
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|| panic!("{function} may {action} any key of {table}"))
}

fn lifecycle_event_id() -> String {
    let now = time::macros::datetime!(2026-12-04 12:00 UTC);
    let conn = shared::connection::Connection::new(
        "user-1",
        shared::Provider::Instagram,
        "17841400000000001",
        "shop",
        now,
    );
    shared::store::Event::lifecycle(
        shared::connection::Lifecycle::NeedsReauth,
        &conn,
        now,
        std::time::Duration::from_secs(86_400),
    )
    .event_id
}

fn webhook_event_id() -> String {
    let body = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1,"messaging":[{"sender":{"id":"9"},"recipient":{"id":"17841400000000001"},"timestamp":1,"message":{"mid":"m_1","text":"hi"}}]}]}"#;
    shared::webhook::parse_notification(body).unwrap()[0]
        .event_id
        .clone()
}

#[test]
fn the_connections_function_touches_only_the_key_shapes_it_uses() {
    let doc = template();
    let f = "ConnectionsFunction";
    let t = "ConnectionsTable";
    let keys = |action| only_grant(&doc, f, action, t);
    // The keys it uses, as the store writes them.
    let user = shared::store::connections::user_pk("user-1");
    assert!(keys("dynamodb:Query").iter().any(|p| like(p, &user)));
    assert_eq!(keys("dynamodb:Query"), ["USER#*"]);
    assert_eq!(keys("dynamodb:GetItem"), ["USER#*", "PAGE#*"]);
    assert_eq!(
        keys("dynamodb:DeleteItem"),
        ["USER#*", "PAGE#*", "ACCOUNT#*"]
    );
    // It never writes a connection, a deletion record or a person's counter:
    // only the owner claim it releases, the cleanup queue, and the deleted
    // account's tombstone (a tombstone's attributes only: never a token).
    assert_eq!(keys("dynamodb:UpdateItem"), ["ACCOUNT#*"]);
    let puts = leading_keys(&doc, f, "dynamodb:PutItem", t);
    assert_eq!(
        puts,
        [
            Some(vec!["CLEANUP".to_string()]),
            Some(vec!["USER#*".to_string()])
        ]
    );
    let put_attrs = attributes(&doc, f, "dynamodb:PutItem", t);
    let tombstone = put_attrs[1].as_ref().expect("the tombstone's attributes");
    for never in ["token", "status", "version", "due_at", "scopes"] {
        assert!(!tombstone.iter().any(|a| a == never), "{never}");
    }
    for action in ["dynamodb:BatchWriteItem", "dynamodb:Scan"] {
        assert!(leading_keys(&doc, f, action, t).is_empty(), "{action}");
    }
    // Its events are lifecycle events, never a webhook item's id.
    let events = only_grant(&doc, f, "dynamodb:PutItem", "EventsTable");
    assert!(events.iter().any(|p| like(p, &lifecycle_event_id())));
    assert!(!events.iter().any(|p| like(p, &webhook_event_id())));
}

#[test]
fn the_graph_function_reads_its_rows_and_writes_only_a_needs_reauth_and_its_event() {
    let doc = template();
    let f = "GraphFunction";
    // The caller's connection row only: both doors name the owner, so no
    // owner claim is read.
    assert_eq!(
        only_grant(&doc, f, "dynamodb:GetItem", "ConnectionsTable"),
        ["USER#*"]
    );
    // The needs_reauth write: connection rows only, named attributes only.
    assert_eq!(
        only_grant(&doc, f, "dynamodb:UpdateItem", "ConnectionsTable"),
        ["USER#*"]
    );
    for action in ["dynamodb:PutItem", "dynamodb:DeleteItem"] {
        assert!(
            leading_keys(&doc, f, action, "ConnectionsTable").is_empty(),
            "graph may {action} connections"
        );
    }
    // Its connection.needs_reauth event: a lifecycle id (so it can't take a
    // webhook item's id first and make the real delivery a duplicate), an
    // event's attributes and nothing else.
    let events = only_grant(&doc, f, "dynamodb:PutItem", "EventsTable");
    assert_eq!(events, ["lc_*"]);
    assert!(like(&events[0], &lifecycle_event_id()));
    assert!(!like(&events[0], &webhook_event_id()));
    let attrs = attributes(&doc, f, "dynamodb:PutItem", "EventsTable");
    let attrs: BTreeSet<String> = attrs[0]
        .clone()
        .expect("event writes limited to named attributes")
        .into_iter()
        .collect();
    let want: BTreeSet<String> = [
        "event_id",
        "kind",
        "provider",
        "account_id",
        "user_id",
        "occurred_at",
        "received_at",
        "payload",
        "expires_at",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    assert_eq!(attrs, want);
    for action in [
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ] {
        assert!(
            leading_keys(&doc, f, action, "EventsTable").is_empty(),
            "graph may {action} events"
        );
    }
}

#[test]
fn deliver_writes_only_health_replays_attempts_and_its_own_events() {
    let doc = template();
    let f = "DeliverFunction";
    let keys = |action, table| leading_keys(&doc, f, action, table);
    let some = |ks: &[&str]| vec![Some(ks.iter().map(|k| k.to_string()).collect::<Vec<_>>())];
    assert_eq!(
        keys("dynamodb:UpdateItem", "EndpointsTable"),
        some(&["endpoint", "replay"])
    );
    assert_eq!(
        keys("dynamodb:PutItem", "EndpointsTable"),
        some(&["attempts#*"])
    );
    let own = format!("{}*", deliver::DISABLED_EVENT_ID_PREFIX);
    assert_eq!(
        keys("dynamodb:PutItem", "EventsTable"),
        some(&[own.as_str()])
    );
    for action in ["dynamodb:DeleteItem", "dynamodb:BatchWriteItem"] {
        assert!(keys(action, "EndpointsTable").is_empty(), "{action}");
        assert!(keys(action, "EventsTable").is_empty(), "{action}");
    }
    assert!(keys("dynamodb:UpdateItem", "EventsTable").is_empty());
}

/// The queue policy `name` refuses `sqs:SendMessage` (and so a batch) to
/// every principal but the delivery rule and the roles `senders`: a message
/// on the delivery queues is signed with an endpoint's real secret.
/// `name`'s one Deny refuses `sqs:SendMessage` to all but `senders` (and
/// the events bus's rule, when `from_rule`).
fn only_these_send(doc: &Value, name: &str, senders: &[&str], from_rule: bool) {
    let statements = resource(doc, name)["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap()
        .clone();
    let deny: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Effect"].as_str() == Some("Deny"))
        .collect();
    assert_eq!(deny.len(), 1, "{name}: one Deny");
    let s = deny[0];
    assert_eq!(s["Principal"].as_str(), Some("*"), "{name}");
    assert_eq!(s["Action"].as_str(), Some("sqs:SendMessage"), "{name}");
    let not = &s["Condition"]["ArnNotEquals"];
    assert_eq!(s["Condition"].as_mapping().unwrap().len(), 1, "{name}");
    let conditions = if from_rule { 2 } else { 1 };
    assert_eq!(not.as_mapping().unwrap().len(), conditions, "{name}");
    if from_rule {
        assert_eq!(
            tagged_text(&not["aws:SourceArn"]),
            "!GetAtt DeliveryRule.Arn",
            "{name}"
        );
    }
    let roles: BTreeSet<String> = not["aws:PrincipalArn"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(tagged_text)
        .collect();
    let want: BTreeSet<String> = senders.iter().map(|r| format!("!GetAtt {r}.Arn")).collect();
    assert_eq!(roles, want, "{name}");
}

#[test]
fn only_the_pipe_may_put_ig_connect_events_on_the_bus() {
    let doc = template();
    let policy = resource(&doc, "EventBusOnlyThePipe");
    assert_eq!(policy["Type"].as_str(), Some("AWS::Events::EventBusPolicy"));
    let p = &policy["Properties"];
    assert!(is_ref(&p["EventBusName"], "EventBus"));
    let s = &p["Statement"];
    assert_eq!(s["Effect"].as_str(), Some("Deny"));
    assert_eq!(s["Principal"].as_str(), Some("*"));
    assert_eq!(s["Action"].as_str(), Some("events:PutEvents"));
    assert_eq!(tagged_text(&s["Resource"]), "!GetAtt EventBus.Arn");
    // The source the pipe puts its events with...
    let source = resource(&doc, "EventsPipe")["Properties"]["TargetParameters"]
        ["EventBridgeEventBusParameters"]["Source"]
        .as_str()
        .unwrap();
    assert_eq!(
        s["Condition"]["StringEquals"]["events:source"].as_str(),
        Some(source)
    );
    // ...is refused to every principal but the pipe's role.
    assert_eq!(
        tagged_text(&s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]),
        tagged_text(&resource(&doc, "EventsPipe")["Properties"]["RoleArn"])
    );
}

#[test]
fn cors_lets_a_browser_send_an_idempotency_key_and_read_the_proxy_headers() {
    let doc = template();
    let cors = &resource(&doc, "HttpApi")["Properties"]["CorsConfiguration"];
    let list = |name: &str| -> BTreeSet<String> {
        cors[name]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}"))
            .iter()
            .map(|h| h.as_str().unwrap().to_ascii_lowercase())
            .collect()
    };
    let allowed = list("AllowHeaders");
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(h), "{h} not allowed: {allowed:?}");
    }
    let exposed = list("ExposeHeaders");
    for h in [
        "retry-after",
        "idempotent-replayed",
        "x-app-usage",
        "x-business-use-case-usage",
    ] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed:?}");
    }
}

#[test]
fn the_graph_proxy_has_capacity_of_its_own_and_per_caller_limits() {
    let doc = template();
    let params = &doc["Parameters"];
    let graph = &resource(&doc, "GraphFunction");
    // Reserved concurrency: kept for it, and its ceiling.
    assert!(is_ref(
        &graph["Properties"]["ReservedConcurrentExecutions"],
        "GraphReservedConcurrency"
    ));
    let reserved = &params["GraphReservedConcurrency"];
    assert!(reserved["Default"].as_u64().unwrap() >= 10);
    assert!(reserved["MinValue"].as_u64().unwrap() >= 1);
    // Running out of it is an alarm.
    let throttles = &resource(&doc, "GraphThrottlesAlarm")["Properties"];
    assert_eq!(throttles["MetricName"].as_str(), Some("Throttles"));
    assert!(is_ref(
        &throttles["Dimensions"][0]["Value"],
        "GraphFunction"
    ));
    let skips = format!("{:?}", graph["Metadata"]["checkov"]);
    assert!(
        !skips.contains("CKV_AWS_115"),
        "no skip of the concurrency check now that it has a reservation"
    );
    // The buckets: each a parameter, passed to the function, with the
    // contract's defaults (the code's own defaults).
    let defaults = shared::graph::buckets::CallerLimits::default();
    let env = &graph["Properties"]["Environment"]["Variables"];
    for (var, param, default) in [
        ("GRAPH_USER_RATE", "GraphUserRate", defaults.user.rate),
        ("GRAPH_USER_BURST", "GraphUserBurst", defaults.user.burst),
        (
            "GRAPH_CONNECTION_RATE",
            "GraphConnectionRate",
            defaults.connection.rate,
        ),
        (
            "GRAPH_CONNECTION_BURST",
            "GraphConnectionBurst",
            defaults.connection.burst,
        ),
    ] {
        assert!(is_ref(&env[var], param), "{var} is !Ref {param}");
        let p = &params[param];
        assert_eq!(p["Type"].as_str(), Some("Number"), "{param}");
        assert_eq!(p["Default"].as_u64(), Some(default), "{param}");
        assert_eq!(p["MinValue"].as_u64(), Some(1), "{param}");
        assert!(p["Description"].as_str().is_some_and(|d| d.len() > 20));
    }
    assert_eq!(
        (defaults.user.rate, defaults.user.burst),
        (20, 40),
        "CONTRACT.md's defaults"
    );
    assert_eq!(
        (defaults.connection.rate, defaults.connection.burst),
        (10, 20)
    );
}

#[test]
fn publishing_runs_every_minute_and_its_http_door_touches_only_posts() {
    let doc = template();
    let run = resource(&doc, "PublishFunction");
    let p = &run["Properties"];
    // A post's lease outlives the run that holds it by a minute at least:
    // Lambda has stopped that run before another may take the post.
    let timeout = p["Timeout"].as_i64().expect("PublishFunction's Timeout");
    assert!(
        publish::run::LEASE_FOR.whole_seconds() >= timeout + 60,
        "lease {} s against a {timeout} s timeout",
        publish::run::LEASE_FOR.whole_seconds()
    );
    assert_eq!(
        p["Environment"]["Variables"]["PUBLISH_DOOR"].as_str(),
        Some("invoke")
    );
    let schedule = &p["Events"]["EveryMinute"]["Properties"];
    assert_eq!(
        schedule["ScheduleExpression"].as_str(),
        Some("rate(1 minute)")
    );
    let input: serde_json::Value =
        serde_json::from_str(schedule["Input"].as_str().unwrap()).unwrap();
    assert_eq!(
        input["detail-type"], "Scheduled Event",
        "what the function reads as a run"
    );
    // The due index is queried, never scanned.
    let policy = tagged_text(&p["Policies"]);
    assert!(policy.contains("by_due") && !policy.contains("dynamodb:Scan"));
    assert!(tagged_text(resource(&doc, "PublishContinues")).contains("PublishFunction"));

    let http = resource(&doc, "PublishHttpFunction");
    let p = &http["Properties"];
    assert_eq!(
        p["Environment"]["Variables"]["PUBLISH_DOOR"].as_str(),
        Some("http")
    );
    let policy = tagged_text(&p["Policies"]);
    for never in [
        "kms:",
        "secretsmanager:",
        "EventsTable",
        "UpdateItem",
        "by_due",
    ] {
        assert!(!policy.contains(never), "the HTTP door may not use {never}");
    }
    let routes: Vec<String> = p["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|e| {
            format!(
                "{} {}",
                e["Properties"]["Method"].as_str().unwrap(),
                e["Properties"]["Path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(routes.len(), 5, "{routes:?}");
    // Uploads: the HTTP door presigns PUTs, the run presigns Meta's GETs,
    // each under uploads/ only.
    assert!(policy.contains("s3:PutObject") && !policy.contains("s3:GetObject"));
    let run_policy = tagged_text(&run["Properties"]["Policies"]);
    assert!(run_policy.contains("s3:GetObject") && !run_policy.contains("s3:PutObject"));
    for p in [&policy, &run_policy] {
        assert!(p.contains("MediaBucket.Arn}/uploads/*"), "{p}");
    }

    let table = resource(&doc, "PostsTable");
    let t = &table["Properties"];
    assert_eq!(
        t["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expires_at")
    );
    let indexes = tagged_text(&t["GlobalSecondaryIndexes"]);
    assert!(indexes.contains("due_shard") && indexes.contains("by_owner"));
    assert!(doc["Outputs"]["PublishFunctionArn"].is_mapping());
}

#[test]
fn the_media_bucket_is_private_encrypted_tls_only_and_forgets_uploads_after_7_days() {
    let doc = template();
    let p = &resource(&doc, "MediaBucket")["Properties"];
    let block = &p["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert!(sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        .as_str()
        .is_some());
    let rule = &p["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(
        (rule["Status"].as_str(), rule["ExpirationInDays"].as_u64()),
        (Some("Enabled"), Some(7))
    );
    // Browsers PUT from the frontend's origins, nothing else.
    let cors = &p["CorsConfiguration"]["CorsRules"][0];
    assert!(is_ref(&cors["AllowedOrigins"], "AllowedOrigins"));
    let methods = cors["AllowedMethods"].as_sequence().unwrap();
    assert_eq!(
        methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        [Some("PUT")]
    );
    // Every request without TLS is denied.
    let policy = &resource(&doc, "MediaBucketPolicy")["Properties"]["PolicyDocument"];
    let tls = policy["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Effect"].as_str() == Some("Deny"))
        .expect("a Deny statement");
    assert_eq!(tls["Action"].as_str(), Some("s3:*"));
    assert_eq!(
        tls["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
        Some("false")
    );
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
    for (name, senders, from_rule) in [
        (
            "DeliveryQueuePolicy",
            &["DeliverFunctionRole", "AdminFunctionRole"][..],
            true,
        ),
        (
            "DeliveryDeadLettersPolicy",
            &["DeliverFunctionRole"][..],
            true,
        ),
        (
            "SlowDeliveryQueuePolicy",
            &["DeliverFunctionRole"][..],
            false,
        ),
    ] {
        only_these_send(&doc, name, senders, from_rule);
    }
    let queue = &resource(&doc, "DeliveryQueue")["Properties"];
    for q in ["DeliveryQueue", "SlowDeliveryQueue"] {
        let redrive = &resource(&doc, q)["Properties"]["RedrivePolicy"];
        assert!(tagged_text(&redrive["deadLetterTargetArn"]).contains("DeliveryDeadLetters"));
    }

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

    // The slow lane: one record per invocation, bounded concurrency, its
    // own queue named to the function, which is allowed to use it.
    let slow = &deliver["Events"]["SlowDeliveries"]["Properties"];
    assert_eq!(tagged_text(&slow["Queue"]), "!GetAtt SlowDeliveryQueue.Arn");
    assert_eq!(slow["BatchSize"].as_u64(), Some(1));
    assert_eq!(
        slow["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert!(slow["ScalingConfig"]["MaximumConcurrency"]
        .as_u64()
        .is_some());
    let slow_queue = &resource(&doc, "SlowDeliveryQueue")["Properties"];
    assert!(slow_queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    let env = &deliver["Environment"]["Variables"];
    assert_eq!(
        tagged_text(&env["DELIVERY_SLOW_QUEUE_URL"]),
        "!Ref SlowDeliveryQueue"
    );

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
    // the roles of admin (seals) and deliver (opens), named by ARN; neither
    // function may touch the token key or the connections.
    let key = &resource(&doc, "EndpointSecretKey")["Properties"]["KeyPolicy"];
    let context = &key["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"].as_str() == Some("CryptoOnlyWithEndpointSecretContext"));
    assert_eq!(
        context.unwrap()["Condition"]["StringNotEquals"]["kms:EncryptionContext:purpose"].as_str(),
        Some("webhook-endpoint-secret")
    );
    let (named, granted) = key_policy(
        &doc,
        "EndpointSecretKey",
        "CryptoOnlyForWebhookFunctions",
        "webhook-endpoint-secret",
    );
    let roles: BTreeSet<String> = ["Admin", "Deliver"]
        .iter()
        .map(|f| format!("!GetAtt {f}FunctionRole.Arn"))
        .collect();
    assert_eq!(named, roles);
    assert_eq!(
        granted,
        role_grants(&["Admin kms:GenerateDataKey", "Deliver kms:Decrypt"]),
        "admin seals, never opens; deliver opens, never seals"
    );
    for id in ["AdminFunction", "DeliverFunction"] {
        let policies = format!("{:?}", resource(&doc, id)["Properties"]["Policies"]);
        assert!(
            !policies.contains("TokenKey") && !policies.contains("ConnectionsTable"),
            "{id}"
        );
    }
}
