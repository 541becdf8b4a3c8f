//! Uploads (CONTRACT.md, "Publishing"): a presigned `PUT` into the private
//! media bucket (moto's S3), a post naming the upload's `media_url`, and
//! Meta given a presigned `GET` of it, which the emulated Meta fetches.

use super::*;

/// An image's bytes (a JPEG's first bytes are enough for the emulation).
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 an uploaded photo";

impl Setup {
    /// `POST .../posts/uploads` as `user`: (status, body).
    pub async fn ask_upload(&self, user: &str, account: &str, upload: Value) -> (u16, Value) {
        let req = ApiRequest::new(
            "POST",
            &format!("/connections/instagram/{account}/posts/uploads"),
        )
        .user(user)
        .json(&upload)
        .into_request();
        let resp = self.http.handle(req).await;
        (resp.status().as_u16(), resp.body_json())
    }

    /// An upload of `bytes` as user-1, PUT as a browser would: its
    /// `media_url`.
    pub async fn upload(&self, bytes: &[u8]) -> String {
        let (status, body) = self
            .ask_upload(
                "user-1",
                &self.account,
                json!({"kind": "image", "content_type": "image/jpeg", "bytes": bytes.len()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(put(&body, bytes.to_vec()).await, 200);
        body["media_url"].as_str().unwrap().to_string()
    }
}

/// PUTs `bytes` to an upload's URL with its headers (but `content-length`,
/// which a browser sets itself): the status.
async fn put(upload: &Value, bytes: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new().put(upload["upload_url"].as_str().unwrap());
    for (k, v) in upload["headers"].as_object().unwrap() {
        if !k.eq_ignore_ascii_case("content-length") {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    req.body(bytes).send().await.unwrap().status().as_u16()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    param(&url::Url::parse(url).unwrap(), name)
}

#[tokio::test]
async fn an_uploaded_image_is_posted_and_meta_fetches_it_through_a_presigned_get() {
    let t = setup().await;
    let (status, upload) = t
        .ask_upload(
            "user-1",
            &t.account,
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": JPEG.len()}),
        )
        .await;
    assert_eq!(status, 201, "{upload}");
    let bucket = t.h.stack.var("MEDIA_BUCKET");
    let media_url = upload["media_url"].as_str().unwrap();
    assert!(
        media_url.starts_with(&format!("s3://{bucket}/uploads/")) && media_url.ends_with(".jpg"),
        "{media_url}"
    );
    assert_eq!(upload["expires_at"], "2026-11-21T12:15:00Z");
    // The PUT is presigned for 15 minutes, bound to the type and the size.
    let put_url = upload["upload_url"].as_str().unwrap();
    assert_eq!(
        query_value(put_url, "X-Amz-Expires").as_deref(),
        Some("900")
    );
    let signed = query_value(put_url, "X-Amz-SignedHeaders").unwrap();
    assert!(
        signed.contains("content-length") && signed.contains("content-type"),
        "{signed}"
    );
    assert_eq!(upload["headers"]["content-type"], "image/jpeg");
    // No checksum signed in (one of an empty body would refuse the file).
    let headers = upload["headers"].to_string();
    assert!(
        !put_url.to_ascii_lowercase().contains("checksum") && !headers.contains("checksum"),
        "{put_url} {headers}"
    );
    assert_eq!(put(&upload, JPEG.to_vec()).await, 200);

    let (status, body) = t
        .create(json!({"type": "feed", "media": [{"kind": "image", "url": media_url}], "caption": "From my laptop"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["post_id"].as_str().unwrap().to_string();
    assert_eq!(t.run().await.published, 1);

    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    // The post keeps naming the upload; only Meta saw a presigned URL.
    assert_eq!(post["media"][0]["url"], media_url);
    let fetched = t.h.stack.meta.fetched_media();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].bytes, JPEG);
    assert_eq!(fetched[0].content_type, "image/jpeg");
    let get_url = &fetched[0].url;
    assert!(
        get_url.contains(&format!("/{bucket}/uploads/")),
        "{get_url}"
    );
    assert_eq!(
        query_value(get_url, "X-Amz-Expires").as_deref(),
        Some("7200")
    );
    // Neither presigned URL is ever logged: each is a credential while valid.
    let logged = logs();
    for url in [put_url, get_url.as_str()] {
        let signature = query_value(url, "X-Amz-Signature").unwrap();
        assert!(!logged.contains(&signature), "a presigned URL was logged");
    }
}

#[tokio::test]
async fn a_carousel_of_uploads_and_links_publishes_each_upload_fetched_once() {
    let t = setup().await;
    let first = t.upload(JPEG).await;
    let second = t.upload(b"\xff\xd8\xff second photo").await;
    let (status, body) = t
        .create(json!({"type": "feed", "media": [
            {"kind": "image", "url": first}, image(7), {"kind": "image", "url": second}]}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(t.run().await.published, 1);
    let fetched: Vec<Vec<u8>> =
        t.h.stack
            .meta
            .fetched_media()
            .into_iter()
            .map(|f| f.bytes)
            .collect();
    assert_eq!(
        fetched,
        vec![JPEG.to_vec(), b"\xff\xd8\xff second photo".to_vec()]
    );
}

#[tokio::test]
async fn an_upload_never_put_fails_the_post_as_media_rejected_without_publishing() {
    let t = setup().await;
    let (_, upload) = t
        .ask_upload(
            "user-1",
            &t.account,
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": 10}),
        )
        .await;
    let (_, body) = t
        .create(json!({"type": "story", "media": [{"kind": "image", "url": upload["media_url"]}]}))
        .await;
    let id = body["post_id"].as_str().unwrap().to_string();
    assert_eq!(t.run().await.failed, 1);
    let post = t.get(&id).await;
    assert_eq!(
        (post["status"].as_str(), post["error"]["reason"].as_str()),
        (Some("failed"), Some("media_rejected")),
        "{post}"
    );
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);
}

#[tokio::test]
async fn a_post_names_only_its_own_connections_uploads_of_its_kind() {
    let t = setup().await;
    let other = t.h.connect_instagram_as("user-2", "shop.two").await;
    let (status, theirs) = t
        .ask_upload(
            "user-2",
            &other,
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": 10}),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    let (status, body) = t
        .create(json!({"type": "feed", "media": [{"kind": "image", "url": theirs["media_url"]}]}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("$.media[0].url")),
        "{body}"
    );
    // Nor can user-1 ask for an upload on user-2's connection.
    let (status, _) = t
        .ask_upload(
            "user-1",
            &other,
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": 10}),
        )
        .await;
    assert_eq!(status, 404);
    // A video upload is not an image.
    let (_, video) = t
        .ask_upload(
            "user-1",
            &t.account,
            json!({"kind": "video", "content_type": "video/mp4", "bytes": 10}),
        )
        .await;
    assert!(video["media_url"].as_str().unwrap().ends_with(".mp4"));
    let (status, body) = t
        .create(json!({"type": "feed", "media": [{"kind": "image", "url": video["media_url"]}]}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("$.media[0].url"))
    );
    let (status, _) = t
        .create(json!({"type": "reel", "media": [{"kind": "video", "url": video["media_url"]}]}))
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn upload_refusals_name_the_field_and_the_backend_door_uploads_too() {
    let t = setup().await;
    for (upload, field) in [
        (
            json!({"kind": "image", "content_type": "image/png", "bytes": 10}),
            "$.content_type",
        ),
        (
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": 8 * 1024 * 1024 + 1}),
            "$.bytes",
        ),
        (
            json!({"kind": "video", "content_type": "video/mp4", "bytes": 0}),
            "$.bytes",
        ),
        (
            json!({"kind": "image", "content_type": "image/jpeg", "bytes": 10, "acl": "public-read"}),
            "$.acl",
        ),
    ] {
        let (status, body) = t.ask_upload("user-1", &t.account, upload.clone()).await;
        assert_eq!(
            (status, body["error"].as_str(), body["field"].as_str()),
            (400, Some("invalid_upload"), Some(field)),
            "{upload}"
        );
    }
    let (status, body) = t
        .invoke(json!({"action": "upload", "provider": "instagram", "account_id": t.account,
            "user_id": "user-1", "upload": {"kind": "video", "content_type": "video/quicktime", "bytes": 2048}}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["media_url"].as_str().unwrap().ends_with(".mov"));
    let (status, _) = t
        .invoke(json!({"action": "upload", "provider": "instagram", "account_id": t.account,
            "user_id": "user-2", "upload": {"kind": "video", "content_type": "video/mp4", "bytes": 2048}}))
        .await;
    assert_eq!(status, 404);
}
