//! `POST /meta/deauthorize`, and the revoke it shares with data deletion:
//! a person's connections granted before Meta's request are revoked and
//! their tokens deleted; a newer grant is never undone.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::connection::{Connection, Lifecycle};
use shared::http;
use shared::logging::tag;
use shared::store::Event;
use shared::time::OffsetDateTime;

use crate::{MetaStore, Unavailable, Webhook};

/// The deauthorize rule (docs/contract.md, "POST /meta/deauthorize and POST
/// /meta/data-deletion"): a request issued at `issued_at` revokes a grant
/// whose token Meta issued at or before it; a grant made after the request
/// (the person connected again) is never undone.
pub fn revokes(issued_at: OffsetDateTime, token_issued_at: OffsetDateTime) -> bool {
    token_issued_at <= issued_at
}

impl<S: MetaStore> Webhook<S> {
    /// `POST /meta/deauthorize`: every connection of that person granted
    /// before the request was issued is revoked and its token deleted; a
    /// grant made after it is left alone.
    pub(crate) async fn deauthorize(&self, req: &Request) -> Response<Body> {
        let request = match self.signed_request(req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let issued_at = self.issued_at(&request);
        match self
            .revoke_granted_before(&request.user_id, issued_at)
            .await
        {
            Ok(revoked) => {
                let newly = revoked.iter().filter(|r| r.newly).count();
                tracing::info!(meta_user = %tag(&request.user_id), revoked = newly, "deauthorized");
                http::json(StatusCode::OK, &json!({"revoked": newly}))
            }
            Err(e) => e.response("deauthorize"),
        }
    }

    /// Revokes the person's connections whose grant is not newer than
    /// `issued_at`, and returns them (revoked now, or already before). A
    /// connection Meta issued its token for after `issued_at` was made again
    /// after the request: it is not touched, even if that happens while this
    /// runs (the revoke's condition).
    pub(crate) async fn revoke_granted_before(
        &self,
        meta_user: &str,
        issued_at: OffsetDateTime,
    ) -> Result<Vec<Revoked>, Unavailable> {
        let conns = self.store.by_meta_user(meta_user).await?;
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut kept = 0;
        for c in conns {
            if !revokes(issued_at, c.token_issued_at) {
                kept += 1;
                continue;
            }
            let mut revoked = c.clone();
            revoked.status = shared::connection::Status::Revoked;
            let event = Event::lifecycle(
                Lifecycle::Revoked,
                &revoked,
                now,
                self.config.store.event_retention,
            );
            if self
                .store
                .revoke_granted_before(&c, issued_at, &event, now)
                .await?
            {
                out.push(Revoked {
                    conn: c,
                    newly: true,
                });
                continue;
            }
            // Nothing changed: already revoked, gone, or granted again since
            // it was read. Only the first still concerns this request.
            let current = self
                .store
                .connection(&c.user_id, c.provider, &c.account_id)
                .await?;
            match current {
                Some((now_conn, _)) if now_conn.token_issued_at <= issued_at => {
                    out.push(Revoked {
                        conn: now_conn,
                        newly: false,
                    });
                }
                Some(_) => kept += 1,
                None => {}
            }
        }
        if kept > 0 {
            tracing::info!(
                meta_user = %tag(meta_user),
                kept,
                "signed_request older than a grant: that grant is kept"
            );
        }
        Ok(out)
    }
}

/// A connection a Meta callback concerns, and whether this call revoked it.
pub(crate) struct Revoked {
    pub(crate) conn: Connection,
    pub(crate) newly: bool,
}

#[cfg(test)]
mod tests {
    use super::revokes;
    use shared::time::{Duration, OffsetDateTime};

    #[test]
    fn a_request_revokes_grants_up_to_its_instant_and_never_a_later_one() {
        // 2026-11-21 12:00:00 UTC.
        let request = OffsetDateTime::from_unix_timestamp(1_795_262_400).unwrap();
        assert!(revokes(request, request - Duration::days(30)), "older");
        assert!(revokes(request, request), "the same second");
        assert!(!revokes(request, request + Duration::seconds(1)), "newer");
    }
}
