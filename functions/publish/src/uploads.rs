//! Uploads (CONTRACT.md, "Publishing"): a presigned S3 `PUT` (15 minutes,
//! bound to the size and type asked for) into the service's private media
//! bucket, under a prefix of the connection; a post names the object by its
//! `media_url` (`s3://<bucket>/uploads/<scope>/<id>.<ext>`), and Meta is
//! given a presigned `GET` of it valid for 2 hours when the post publishes.

use serde_json::{json, Value};
use sha2::Digest;
use shared::time::{Duration, OffsetDateTime};
use shared::Provider;

use crate::post::MediaKind;
use crate::validate::Invalid;

pub const PUT_FOR: Duration = Duration::minutes(15);
pub const GET_FOR: Duration = Duration::hours(2);
pub const MAX_IMAGE_BYTES: u64 = 8 * 1024 * 1024;
pub const MAX_VIDEO_BYTES: u64 = 300 * 1024 * 1024;

/// An upload asked for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub kind: MediaKind,
    pub content_type: &'static str,
    pub bytes: u64,
    pub extension: &'static str,
}

fn invalid(field: &str, message: &str) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// `{"kind", "content_type", "bytes"}`: JPEG images up to 8 MB, MP4 or MOV
/// videos up to 300 MB.
pub fn check(body: &Value) -> Result<Upload, Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("$", "the upload must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["kind", "content_type", "bytes"].contains(&k.as_str()))
    {
        return Err(invalid(&format!("$.{k}"), "unknown field"));
    }
    let kind = match obj.get("kind").and_then(Value::as_str) {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        _ => return Err(invalid("$.kind", "kind must be image or video")),
    };
    let given = obj.get("content_type").and_then(Value::as_str);
    let (content_type, extension) = match (kind, given) {
        (MediaKind::Image, Some("image/jpeg")) => ("image/jpeg", "jpg"),
        (MediaKind::Video, Some("video/mp4")) => ("video/mp4", "mp4"),
        (MediaKind::Video, Some("video/quicktime")) => ("video/quicktime", "mov"),
        _ => {
            return Err(invalid(
                "$.content_type",
                "images are image/jpeg; videos video/mp4 or video/quicktime",
            ))
        }
    };
    let max = match kind {
        MediaKind::Image => MAX_IMAGE_BYTES,
        MediaKind::Video => MAX_VIDEO_BYTES,
    };
    let bytes = obj.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    if bytes == 0 || bytes > max {
        return Err(invalid(
            "$.bytes",
            "images up to 8 MB, videos up to 300 MB (and more than 0)",
        ));
    }
    Ok(Upload {
        kind,
        content_type,
        bytes,
        extension,
    })
}

/// Where a connection's uploads live: `s3://<bucket>/uploads/<scope>/`,
/// the scope a hash of the owner and the connection (a post can only name
/// its own connection's uploads).
pub fn prefix(bucket: &str, user_id: &str, provider: Provider, account_id: &str) -> String {
    let mut h = sha2::Sha256::new();
    for part in [user_id, provider.as_str(), account_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!(
        "s3://{bucket}/uploads/{}/",
        &hex::encode(h.finalize())[..32]
    )
}

/// The object key of one of this bucket's `media_url`s.
pub fn object_key<'a>(url: &'a str, bucket: &str) -> Option<&'a str> {
    let key = url
        .strip_prefix("s3://")?
        .strip_prefix(bucket)?
        .strip_prefix('/')?;
    let ok = key.starts_with("uploads/")
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    ok.then_some(key)
}

/// The kind of an upload's object name (`<32 hex>.<ext>`, as [`new_key`]
/// makes them); `None` for any other name.
pub fn kind_of_name(name: &str) -> Option<MediaKind> {
    let (id, ext) = name.split_once('.')?;
    let id_ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match ext {
        "jpg" if id_ok => Some(MediaKind::Image),
        "mp4" | "mov" if id_ok => Some(MediaKind::Video),
        _ => None,
    }
}

/// A new object's key under `prefix`'s scope.
pub fn new_key(prefix: &str, bucket: &str, extension: &str) -> String {
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    let base = prefix
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or(prefix);
    format!("{base}{}.{extension}", hex::encode(id))
}

/// The answer to an upload: `201 {"upload_url", "headers", "media_url", "expires_at"}`.
pub fn answer(url: &str, headers: Value, media_url: &str, expires_at: OffsetDateTime) -> Value {
    json!({"upload_url": url, "headers": headers, "media_url": media_url,
        "expires_at": shared::clock::rfc3339(expires_at)})
}

/// The media bucket, presigning.
#[derive(Clone, Debug)]
pub struct MediaBucket {
    client: aws_sdk_s3::Client,
    pub bucket: String,
}

#[derive(Debug, thiserror::Error)]
#[error("could not presign: {0}")]
pub struct PresignError(String);

impl MediaBucket {
    /// The bucket's client; path-style addressing when `AWS_ENDPOINT_URL`
    /// points at a local emulator.
    pub fn new(aws: &aws_config::SdkConfig, bucket: &str) -> Self {
        let local = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let conf = aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(local)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_string(),
        }
    }

    fn presigning(d: Duration) -> Result<aws_sdk_s3::presigning::PresigningConfig, PresignError> {
        let secs = d.whole_seconds().max(1) as u64;
        aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(secs))
            .map_err(|e| PresignError(e.to_string()))
    }

    /// A presigned `PUT` of exactly `upload`'s size and type: its URL and
    /// the headers the uploader must send.
    pub async fn presign_put(
        &self,
        key: &str,
        upload: &Upload,
    ) -> Result<(String, Value), PresignError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(upload.content_type)
            .content_length(upload.bytes as i64)
            .presigned(Self::presigning(PUT_FOR)?)
            .await
            .map_err(|e| PresignError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        Ok((req.uri().to_string(), Value::Object(headers)))
    }

    /// A presigned `GET` for Meta, valid 2 hours.
    pub async fn presign_get(&self, key: &str) -> Result<String, PresignError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning(GET_FOR)?)
            .await
            .map_err(|e| PresignError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(req.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_jpeg_images_or_mp4_and_mov_videos_within_their_sizes() {
        let ok = check(
            &json!({"kind": "image", "content_type": "image/jpeg", "bytes": MAX_IMAGE_BYTES}),
        )
        .unwrap();
        assert_eq!((ok.extension, ok.bytes), ("jpg", MAX_IMAGE_BYTES));
        let mov = check(&json!({"kind": "video", "content_type": "video/quicktime", "bytes": 1}))
            .unwrap();
        assert_eq!(mov.extension, "mov");
        for (bad, field) in [
            (
                json!({"kind": "image", "content_type": "image/jpeg", "bytes": MAX_IMAGE_BYTES + 1}),
                "$.bytes",
            ),
            (
                json!({"kind": "video", "content_type": "video/mp4", "bytes": MAX_VIDEO_BYTES + 1}),
                "$.bytes",
            ),
            (
                json!({"kind": "image", "content_type": "image/jpeg", "bytes": 0}),
                "$.bytes",
            ),
            (
                json!({"kind": "image", "content_type": "image/png", "bytes": 10}),
                "$.content_type",
            ),
            (
                json!({"kind": "image", "content_type": "video/mp4", "bytes": 10}),
                "$.content_type",
            ),
            (
                json!({"kind": "gif", "content_type": "image/gif", "bytes": 10}),
                "$.kind",
            ),
            (
                json!({"kind": "image", "content_type": "image/jpeg", "bytes": 10, "acl": "public-read"}),
                "$.acl",
            ),
        ] {
            assert_eq!(check(&bad).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn a_connection_names_only_its_own_uploads() {
        let mine = prefix("media", "u1", Provider::Instagram, "17");
        let theirs = prefix("media", "u2", Provider::Instagram, "17");
        assert_ne!(mine, theirs);
        let key = new_key(&mine, "media", "jpg");
        let url = format!("s3://media/{key}");
        assert!(url.starts_with(&mine) && !url.starts_with(&theirs));
        assert_eq!(object_key(&url, "media"), Some(key.as_str()));
        assert_eq!(object_key("s3://other/uploads/x.jpg", "media"), None);
        assert_eq!(object_key("s3://media/secrets/x.jpg", "media"), None);
        assert_eq!(object_key("s3://media/uploads/../x?.jpg", "media"), None);
    }
}
