//! `GET /admin/endpoints/{id}/attempts?event_id=&outcome=&limit=&cursor=`:
//! newest first, kept 14 days. The cursor is opaque (base64url).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::http::{self, query_param};
use shared::outbound::attempt::Attempt;
use shared::outbound::store::AttemptQuery;
use shared::vault::DataKeys;

use crate::{bad_request, not_found, server_error, Admin, AdminStore};

/// Attempts per page unless `limit` says otherwise (1 to 100).
pub const DEFAULT_LIMIT: usize = 50;

/// The query, or the refusal's code.
pub fn read_query(
    event_id: Option<String>,
    outcome: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
) -> Result<AttemptQuery, &'static str> {
    if outcome
        .as_deref()
        .is_some_and(|o| o != "delivered" && o != "failed")
    {
        return Err("invalid_outcome");
    }
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or("invalid_limit")?,
    };
    let cursor = match cursor {
        None => None,
        Some(c) => {
            let raw = B64.decode(c).map_err(|_| "invalid_cursor")?;
            Some(String::from_utf8(raw).map_err(|_| "invalid_cursor")?)
        }
    };
    Ok(AttemptQuery {
        event_id: event_id.filter(|e| !e.is_empty()),
        outcome,
        limit,
        cursor,
    })
}

impl<K: DataKeys, S: AdminStore> Admin<K, S> {
    pub(crate) async fn attempts(&self, id: &str, req: &Request) -> Response<Body> {
        let q = |n| query_param(req, n);
        let query = match read_query(q("event_id"), q("outcome"), q("limit"), q("cursor")) {
            Ok(query) => query,
            Err(code) => return bad_request(code),
        };
        match self.store.get(id).await {
            Ok(Some(_)) => {}
            Ok(None) => return not_found(),
            Err(e) => return server_error(e),
        }
        match self.store.attempts(id, &query).await {
            Ok((attempts, next)) => http::json(
                StatusCode::OK,
                &json!({
                    "attempts": attempts.iter().map(Attempt::view).collect::<Vec<_>>(),
                    "next_cursor": next.map(|n| B64.encode(n)),
                }),
            ),
            Err(e) => server_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked() {
        let ok = read_query(None, Some("failed".into()), Some("10".into()), None).unwrap();
        assert_eq!((ok.limit, ok.outcome.as_deref()), (10, Some("failed")));
        assert_eq!(
            read_query(None, None, None, None).unwrap().limit,
            DEFAULT_LIMIT
        );
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            read_query(None, s("ok"), None, None).err(),
            Some("invalid_outcome")
        );
        assert_eq!(
            read_query(None, None, s("0"), None).err(),
            Some("invalid_limit")
        );
        assert_eq!(
            read_query(None, None, s("101"), None).err(),
            Some("invalid_limit")
        );
        assert_eq!(
            read_query(None, None, None, s("%%")).err(),
            Some("invalid_cursor")
        );
        let c = B64.encode("2026-11-21T12:00:00.000Z#e1#0001");
        let q = read_query(None, None, None, Some(c)).unwrap();
        assert_eq!(
            q.cursor.as_deref(),
            Some("2026-11-21T12:00:00.000Z#e1#0001")
        );
    }
}
