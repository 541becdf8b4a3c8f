//! The `data-deletion` function as Lambda runs it: its real runtime loop
//! behind a local Runtime API, its self-invocations through a local Lambda
//! Invoke API. A run out of time invokes the function again with the next
//! round; a run with time finishes; a job past its last round fails (Lambda
//! retries it, then dead-letters it) without invoking itself again.
//!
//! One test in this binary: it sets process-wide environment variables that
//! the runtime reads at start.

use std::time::Duration;

use infra::apigw::{ApiRequest, ResponseExt};
use infra::lambda_api::{Invocation, LambdaApi};
use infra::runtime_api::{Outcome, RuntimeApi};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::make_signed_request;
use webhook::deletion::{job_payload, MAX_ROUNDS};

/// What Lambda names the function in the invocation's context.
const ITSELF: &str = "arn:aws:lambda:us-east-1:123456789012:function:local";

#[tokio::test]
async fn a_job_out_of_time_invokes_itself_for_the_rest_and_stops_at_its_last_round() {
    tokio::task::LocalSet::new()
        .run_until(the_job_through_the_runtime())
        .await;
}

async fn the_job_through_the_runtime() {
    let h: &'static Harness = Box::leak(Box::new(Harness::new().await));
    let connected = h.connect("instagram", "user-1").await.location();
    let account = param(&connected, "account_id").unwrap();
    deliver_a_dm(h, &account).await;
    h.clock.advance(time::Duration::minutes(1));
    let code = request_deletion(h).await;

    let lambda = LambdaApi::start().await;
    let client: &'static _ = Box::leak(Box::new(lambda.client(&h.stack.aws)));
    let job = h.webhook.deletion_job();
    let api = RuntimeApi::start().await;
    std::env::set_var("AWS_LAMBDA_RUNTIME_API", api.address());
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "data-deletion");
    std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
    std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    tokio::task::spawn_local(job.serve(client));
    api.wait_for_runtime().await;

    // Out of time from the start: nothing deleted, the next round invoked.
    api.set_time_left(Duration::ZERO);
    let answer = api.invoke(job_payload(&code, 0)).await;
    let Outcome::Response(body) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(body["status"], "continued", "{body}");
    let next = Invocation {
        function: ITSELF.into(),
        invocation_type: "Event".into(),
        payload: job_payload(&code, 1),
    };
    assert_eq!(lambda.accepted(), vec![next.clone()]);
    assert_eq!(status(h, &code).await, "pending");

    // Lambda runs that invocation with time: the job completes.
    api.set_time_left(Duration::from_secs(300));
    let answer = api.invoke(next.payload).await;
    let Outcome::Response(body) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(body["status"], "complete", "{body}");
    assert_eq!(lambda.accepted().len(), 1, "a finished job invokes nothing");
    assert_eq!(status(h, &code).await, "complete");

    // A job at its last round and out of time again: an error for Lambda's
    // retries and dead-letter queue, never another invocation.
    let later = request_again_later(h).await;
    api.set_time_left(Duration::ZERO);
    let answer = api.invoke(job_payload(&later, MAX_ROUNDS - 1)).await;
    let Outcome::Error(error) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(error["errorType"], "DataDeletion.TooManyRounds", "{error}");
    assert_eq!(lambda.accepted().len(), 1);
    assert_eq!(lambda.refused(), 0);
    assert_eq!(api.refused(), 0, "an answer Lambda would refuse");
}

fn ig_secret(h: &Harness) -> String {
    h.stack.meta.apps().instagram_app_secret
}

/// A DM for `account`, as Meta delivers it.
async fn deliver_a_dm(h: &Harness, account: &str) {
    let body = json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000456u64,
        "messaging": [{"sender": {"id": "9001"}, "recipient": {"id": account},
                       "timestamp": 1795260000123u64, "message": {"mid": "m_1", "text": "a DM"}}]}]})
    .to_string();
    let mut req = Harness::signed_notification(body.as_bytes(), &ig_secret(h));
    req.path = h.stack.meta_path("/webhook");
    assert_eq!(h.call_webhook(req).await.status(), 200);
}

/// `POST /meta/data-deletion` for the emulated Meta's person; the code.
async fn request_deletion(h: &Harness) -> String {
    let signed = make_signed_request(
        ig_secret(h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": h.clock.now().unix_timestamp(),
                "user_id": "26000000000000001"}),
    );
    let req = ApiRequest::post(&h.stack.meta_path("/meta/data-deletion"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "signed_request={}",
            url::form_urlencoded::byte_serialize(signed.as_bytes()).collect::<String>()
        ));
    let resp = h.call_webhook(req).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let answer: Value = resp.body_json();
    answer["confirmation_code"].as_str().unwrap().to_string()
}

/// The person connects again and asks again a day later: a new job.
async fn request_again_later(h: &Harness) -> String {
    h.clock.advance(time::Duration::days(1));
    h.connect("instagram", "user-1").await;
    h.clock.advance(time::Duration::minutes(1));
    request_deletion(h).await
}

async fn status(h: &Harness, code: &str) -> String {
    let resp = h
        .call_webhook(ApiRequest::get(&format!("/meta/data-deletion/{code}")))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()["status"].as_str().unwrap().to_string()
}
