//! `POST /admin/replays` and `GET /admin/replays/{id}`: stored events of a
//! time range re-delivered with their original `webhook-id`. The job is
//! counted and stored here, then worked by `deliver` a page per queue
//! message (resumable: the job keeps its place). A job whose start fails is
//! withdrawn: the caller's retry makes the only one.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use rand::Rng;
use serde_json::{json, Map, Value};
use shared::http;
use shared::outbound::filter::valid_kinds;
use shared::outbound::replay::{check_range, ReplayFilter, ReplayJob};
use shared::store::StoreError;
use shared::vault::DataKeys;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{bad_request, not_found, server_error, Admin, AdminStore};

/// A replay request, read; or the refusal's code.
pub fn read_replay(
    body: &[u8],
    now: OffsetDateTime,
    retention: time::Duration,
) -> Result<(ReplayFilter, bool), &'static str> {
    let obj: Map<String, Value> = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
    let text = |k: &str, code| match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        _ => Err(code),
    };
    let instant = |k: &str| {
        let t = obj.get(k).and_then(Value::as_str).ok_or("invalid_range")?;
        OffsetDateTime::parse(t, &Rfc3339).map_err(|_| "invalid_range")
    };
    let kinds = match obj.get("kinds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let k: Option<Vec<String>> =
                items.iter().map(|i| i.as_str().map(String::from)).collect();
            Some(k.filter(|k| valid_kinds(k)).ok_or("invalid_kinds")?)
        }
        Some(_) => return Err("invalid_kinds"),
    };
    let filter = ReplayFilter {
        endpoint_id: text("endpoint_id", "not_found")?,
        account_id: text("account_id", "invalid_accounts")?,
        kinds,
        since: instant("since")?,
        until: instant("until")?,
    };
    check_range(filter.since, filter.until, now, retention).map_err(|_| "invalid_range")?;
    let dry_run = match obj.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("invalid_json"),
    };
    Ok((filter, dry_run))
}

impl<K: DataKeys, S: AdminStore> Admin<K, S> {
    pub(crate) async fn create_replay(&self, body: &[u8]) -> Response<Body> {
        let now = self.clock.now();
        let (filter, dry_run) = match read_replay(body, now, self.config.event_retention) {
            Ok(r) => r,
            Err("not_found") => return not_found(),
            Err(code) => return bad_request(code),
        };
        if let Some(id) = &filter.endpoint_id {
            match self.store.get(id).await {
                Ok(Some(_)) => {}
                Ok(None) => return not_found(),
                Err(e) => return server_error(e),
            }
        }
        let events = match self.store.count_events(&filter).await {
            Ok(n) => n,
            Err(e) => return server_error(e),
        };
        if dry_run {
            let answer = json!({ "replay_id": null, "events": events });
            return http::json(StatusCode::ACCEPTED, &answer);
        }
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let job = ReplayJob {
            id: format!("rp_{}", hex::encode(id)),
            filter,
            events,
            enqueued: 0,
            cursor: None,
            complete: false,
        };
        if let Err(e) = self.store.put_replay(&job, now).await {
            return server_error(e);
        }
        if let Err(e) = self.store.start_replay(&job.id).await {
            return self.not_started(&job, e).await;
        }
        tracing::info!(replay = %job.id, events, "replay started");
        started(&job)
    }

    /// A stored job whose start failed: withdrawn, so the caller's retry
    /// makes the only job, and `503`. Unless `deliver` has worked it (the
    /// start went out after all): it runs, `202`. The withdrawal failing
    /// too: `500` (the job stays stored; `GET` it before retrying).
    async fn not_started(&self, job: &ReplayJob, e: StoreError) -> Response<Body> {
        tracing::error!(replay = %job.id, error = %e, "a replay could not be started");
        match self.store.withdraw_replay(&job.id).await {
            Ok(true) => {}
            Ok(false) => return started(job),
            // Stored, maybe started: the caller must not retry blindly.
            Err(e) => {
                tracing::error!(replay = %job.id, error = %e, "a replay not started stays stored");
                return server_error(e);
            }
        }
        http::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The replay could not be started; nothing was kept. Try again.",
        )
    }

    pub(crate) async fn get_replay(&self, id: &str) -> Response<Body> {
        match self.store.replay(id).await {
            Ok(Some(job)) => http::json(StatusCode::OK, &job.view()),
            Ok(None) => http::error(StatusCode::NOT_FOUND, "not_found", "No such replay."),
            Err(e) => server_error(e),
        }
    }
}

/// `202 {"replay_id", "events"}`.
fn started(job: &ReplayJob) -> Response<Body> {
    let answer = json!({ "replay_id": job.id, "events": job.events });
    http::json(StatusCode::ACCEPTED, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    fn read(v: Value) -> Result<(ReplayFilter, bool), &'static str> {
        read_replay(v.to_string().as_bytes(), NOW, time::Duration::days(14))
    }

    #[test]
    fn a_replay_names_a_range_within_retention() {
        let (f, dry) = read(
            json!({"since": "2026-11-20T12:00:00Z", "until": "2026-11-21T12:00:00Z",
            "kinds": ["messages"], "account_id": "1784", "dry_run": true}),
        )
        .unwrap();
        assert!(dry);
        assert_eq!(
            (f.account_id.as_deref(), f.endpoint_id),
            (Some("1784"), None)
        );
        let range = |since: &str, until: &str| read(json!({"since": since, "until": until}));
        assert_eq!(
            range("2026-11-21T12:00:00Z", "2026-11-20T12:00:00Z").err(),
            Some("invalid_range")
        );
        assert_eq!(
            range("2026-11-01T12:00:00Z", "2026-11-20T12:00:00Z").err(),
            Some("invalid_range")
        );
        assert_eq!(
            range("yesterday", "2026-11-20T12:00:00Z").err(),
            Some("invalid_range")
        );
        assert_eq!(
            read(json!({"until": "2026-11-20T12:00:00Z"})).err(),
            Some("invalid_range")
        );
        let bad_kinds = json!({"since": "2026-11-20T12:00:00Z", "until": "2026-11-21T12:00:00Z", "kinds": ["*"]});
        assert_eq!(read(bad_kinds).err(), Some("invalid_kinds"));
    }
}
