//! The routes' answers, the same for both doors: create (validated, with
//! its idempotency key), get, list, cancel. Only the connection's owner
//! may act: anyone else, or no such connection, is `404`.

use serde_json::{json, Value};
use sha2::Digest;
use shared::connection::{Connection, Status as ConnStatus};
use shared::store::StoreError;
use shared::vault::DataKeys;
use shared::Provider;

use crate::post::{Post, Status};
use crate::store::{owner_key, IdemRecord, Write};
use crate::{decide, listing, uploads, validate, PostsApi, Publisher};

/// Longest `Idempotency-Key` taken.
const MAX_KEY_LEN: usize = 255;

/// One request from either door.
#[derive(Clone, Debug)]
pub struct Request {
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    Create {
        post: Value,
        idempotency_key: Option<String>,
    },
    Get {
        post_id: String,
    },
    List {
        status: Option<String>,
        cursor: Option<String>,
    },
    Cancel {
        post_id: String,
    },
    /// `POST .../posts/uploads`.
    Upload {
        upload: Value,
    },
}

/// The answer, the same for both doors.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

/// A backend door's refusal (`shared::door`), as the answer it gives.
impl From<shared::door::Refusal> for Answer {
    fn from(r: shared::door::Refusal) -> Self {
        Self::error(r.status, r.code, &r.message)
    }
}

impl Answer {
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::ok(status, json!({"error": code, "message": message}))
    }

    pub fn ok(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            replayed: false,
        }
    }

    fn unavailable(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::error(
            503,
            "service_unavailable",
            "The service could not reach its store. Try again.",
        )
    }

    fn not_found() -> Self {
        Self::error(404, "not_found", "No such connection or post of yours.")
    }
}

impl<K: DataKeys + Send + Sync + 'static, S: PostsApi> Publisher<K, S> {
    /// One request's answer, logged once.
    pub async fn answer(&self, req: Request) -> Answer {
        let action = match &req.action {
            Action::Create { .. } => "create",
            Action::Get { .. } => "get",
            Action::List { .. } => "list",
            Action::Cancel { .. } => "cancel",
            Action::Upload { .. } => "upload",
        };
        let answer = match self.find(&req).await {
            Ok(Some(conn)) => match &req.action {
                Action::Create {
                    post,
                    idempotency_key,
                } => self.create(&conn, post, idempotency_key.as_deref()).await,
                Action::Get { post_id } => self.get(&req, post_id).await,
                Action::List { status, cursor } => {
                    self.list(&req, status.as_deref(), cursor.as_deref()).await
                }
                Action::Cancel { post_id } => self.cancel(&req, post_id).await,
                Action::Upload { upload } => self.upload(&conn, upload).await,
            },
            Ok(None) => Answer::not_found(),
            Err(answer) => answer,
        };
        tracing::info!(provider = %req.provider, account_id = %req.account_id, action,
            status = answer.status, error = answer.body.get("error").and_then(|e| e.as_str()), "posts call");
        answer
    }

    async fn find(&self, req: &Request) -> Result<Option<Connection>, Answer> {
        if req.user_id.is_empty() {
            return Ok(None);
        }
        let found = self
            .inner
            .store
            .connection(&req.user_id, req.provider, &req.account_id)
            .await;
        found.map_err(Answer::unavailable)
    }

    async fn create(&self, conn: &Connection, body: &Value, key: Option<&str>) -> Answer {
        let now = self.inner.clock.now();
        let uploads = self.uploads_prefix(conn);
        let request = match validate::validate(body, now, uploads.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Answer::ok(
                    400,
                    json!({"error": "invalid_post", "field": e.field, "message": e.message}),
                )
            }
        };
        if let Some(refused) = refusal(conn) {
            return refused;
        }
        if key.is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN) {
            return Answer::error(
                400,
                "invalid_request",
                "Idempotency-Key must be 1 to 255 characters.",
            );
        }
        let post = new_post(conn, request, now);
        let status = if post.request.publish_at.is_some() {
            201
        } else {
            202
        };
        let idem = key.map(|k| IdemRecord {
            key_hash: hash(&[
                &conn.user_id,
                conn.provider.as_str(),
                &conn.account_id,
                &conn.connected_at.unix_timestamp().to_string(),
                k,
            ]),
            request_hash: hash(&[&body.to_string()]),
            post_id: post.post_id.clone(),
            status,
        });
        match self
            .inner
            .store
            .create(&post, decide::first_due(&post), idem.as_ref(), now)
            .await
        {
            Ok(None) => Answer::ok(status, post.view()),
            Ok(Some(earlier)) => self.replay(idem.as_ref(), earlier).await,
            Err(e) => Answer::unavailable(e),
        }
    }

    /// The same key again: the same request gets its post, another request
    /// `422`.
    async fn replay(&self, now: Option<&IdemRecord>, earlier: IdemRecord) -> Answer {
        if now.is_some_and(|r| r.request_hash != earlier.request_hash) {
            return Answer::error(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used for another post.",
            );
        }
        match self.inner.store.get(&earlier.post_id).await {
            Ok(Some(post)) => Answer {
                status: earlier.status,
                body: post.view(),
                replayed: true,
            },
            Ok(None) => Answer::not_found(),
            Err(e) => Answer::unavailable(e),
        }
    }

    /// The post, only under its own connection.
    async fn owned(&self, req: &Request, post_id: &str) -> Result<Post, Answer> {
        match self.inner.store.get(post_id).await {
            Ok(Some(p))
                if p.user_id == req.user_id
                    && p.provider == req.provider
                    && p.account_id == req.account_id =>
            {
                Ok(p)
            }
            Ok(_) => Err(Answer::not_found()),
            Err(e) => Err(Answer::unavailable(e)),
        }
    }

    async fn get(&self, req: &Request, post_id: &str) -> Answer {
        match self.owned(req, post_id).await {
            Ok(post) => Answer::ok(200, post.view()),
            Err(a) => a,
        }
    }

    async fn list(&self, req: &Request, status: Option<&str>, cursor: Option<&str>) -> Answer {
        if status.is_some_and(|s| Status::parse(s).is_none()) {
            return Answer::error(400, "invalid_request", "Unknown status.");
        }
        let cursor = match cursor.map(parse_cursor) {
            None => None,
            Some(Some(c)) => Some(c),
            Some(None) => {
                return Answer::error(
                    400,
                    "invalid_request",
                    "The cursor is not one this service gave.",
                )
            }
        };
        let owner = owner_key(&req.user_id, req.provider.as_str(), &req.account_id);
        match listing::page(&self.inner.store, &owner, status, cursor).await {
            Ok((posts, next)) => Answer::ok(
                200,
                json!({
                    "posts": posts.iter().map(Post::view).collect::<Vec<_>>(),
                    "next_cursor": next.map(|(ms, id)| format!("{ms}.{id}")),
                }),
            ),
            Err(e) => Answer::unavailable(e),
        }
    }

    /// `204` while `scheduled` (a conditional write: a run that took the
    /// post meanwhile makes it `409`).
    async fn cancel(&self, req: &Request, post_id: &str) -> Answer {
        let mut post = match self.owned(req, post_id).await {
            Ok(p) => p,
            Err(a) => return a,
        };
        let not_cancellable = || {
            Answer::error(
                409,
                "not_cancellable",
                "Only a scheduled post can be cancelled.",
            )
        };
        if post.status != Status::Scheduled || post.publish_attempted {
            return not_cancellable();
        }
        post.status = Status::Cancelled;
        post.updated_at = self.inner.clock.now();
        let w = Write {
            due: None,
            lease: None,
            keep_lease: false,
        };
        match self.inner.store.save(&mut post, &w).await {
            Ok(true) => Answer {
                status: 204,
                body: Value::Null,
                replayed: false,
            },
            Ok(false) => not_cancellable(),
            Err(e) => Answer::unavailable(e),
        }
    }
}

/// A new post of `conn`: `scheduled` for a time ahead, else `publishing`.
fn new_post(
    conn: &Connection,
    request: crate::post::NewPost,
    now: shared::time::OffsetDateTime,
) -> Post {
    let status = if request.publish_at.is_some() {
        Status::Scheduled
    } else {
        Status::Publishing
    };
    Post {
        post_id: new_post_id(),
        user_id: conn.user_id.clone(),
        provider: conn.provider,
        account_id: conn.account_id.clone(),
        request,
        status,
        containers: None,
        publish_attempted: false,
        transient_failures: 0,
        media_id: None,
        permalink: None,
        error: None,
        created_at: now,
        updated_at: now,
        published_at: None,
        version: 1,
    }
}

/// `409` for a connection that must be connected again or was revoked.
fn refusal(conn: &Connection) -> Option<Answer> {
    match conn.status {
        ConnStatus::Active => None,
        ConnStatus::NeedsReauth => Some(Answer::error(
            409,
            "connection_needs_reauth",
            "This connection must be connected again.",
        )),
        ConnStatus::Revoked => Some(Answer::error(
            409,
            "connection_revoked",
            "The person removed this app at Meta.",
        )),
    }
}

impl<K: DataKeys + Send + Sync + 'static, S: PostsApi> Publisher<K, S> {
    /// Where this connection's uploads live (`None`: no media bucket).
    fn uploads_prefix(&self, conn: &Connection) -> Option<String> {
        let media = self.inner.media.as_ref()?;
        Some(uploads::prefix(
            &media.bucket,
            &conn.user_id,
            conn.provider,
            &conn.account_id,
        ))
    }

    /// `201 {"upload_url", "headers", "media_url", "expires_at"}`: a
    /// presigned `PUT` of exactly the size and type asked for.
    async fn upload(&self, conn: &Connection, body: &Value) -> Answer {
        let (Some(media), Some(prefix)) = (self.inner.media.as_ref(), self.uploads_prefix(conn))
        else {
            return Answer::error(
                501,
                "not_implemented",
                "Uploads are not configured (MEDIA_BUCKET).",
            );
        };
        let upload = match uploads::check(body) {
            Ok(u) => u,
            Err(e) => {
                return Answer::ok(
                    400,
                    json!({"error": "invalid_upload", "field": e.field, "message": e.message}),
                )
            }
        };
        if let Some(refused) = refusal(conn) {
            return refused;
        }
        let key = uploads::new_key(&prefix, &media.bucket, upload.extension);
        match media.presign_put(&key, &upload).await {
            Ok((url, headers)) => {
                let media_url = format!("s3://{}/{key}", media.bucket);
                let expires_at = self.inner.clock.now() + uploads::PUT_FOR;
                Answer::ok(201, uploads::answer(&url, headers, &media_url, expires_at))
            }
            Err(e) => {
                tracing::error!(error = %e, "could not presign an upload");
                Answer::error(
                    503,
                    "service_unavailable",
                    "Uploads are unavailable for now. Try again.",
                )
            }
        }
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (ms, id) = c.split_once('.')?;
    let ok = id.starts_with("post_")
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some((ms.parse().ok()?, id.to_string()))
}

fn new_post_id() -> String {
    let mut id = [0u8; 12];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    format!("post_{}", hex::encode(id))
}

fn hash(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}
