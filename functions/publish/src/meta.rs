//! The calls to Meta for one post: the connection's token opened once per
//! post, in the `Authorization` header (and `appsecret_proof` for Facebook),
//! one attempt per call (the run decides what comes next), and the container
//! parameters of each post type (META_PLATFORM.md, "Content publishing").

use serde_json::Value;
use shared::config::MetaAppConfig;
use shared::connection::Connection;
use shared::graph::policy;
use shared::meta::proxy::{GraphBody, GraphCall, Unreachable};
use shared::meta::MetaClient;
use shared::secrecy::SecretString;

use crate::decide::{classify, MetaResult};
use crate::post::{MediaKind, NewPost, PostType};

/// Meta, for one connection.
pub(crate) struct Session<'a> {
    pub meta: &'a MetaClient,
    pub app: &'a MetaAppConfig,
    pub conn: Connection,
    pub token: SecretString,
    pub app_secret: Option<SecretString>,
}

impl Session<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(String, String)],
        form: Option<Vec<(String, String)>>,
    ) -> MetaResult {
        let base = policy::graph_base(self.conn.provider, &self.app.urls);
        let url = match policy::target_url(base, &self.app.graph_api_version, segments) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "no Graph URL to call");
                return MetaResult::Transient(Value::Null);
            }
        };
        let body = form.map(GraphBody::Form);
        let call = GraphCall {
            method: method.clone(),
            url,
            query,
            body: body.as_ref(),
            token: &self.token,
            app_secret: self.app_secret.as_ref(),
        };
        let answer = match self.meta.graph_call(&call).await {
            Ok(a) => a,
            Err(Unreachable::NoAnswer(_)) if method == reqwest::Method::POST => {
                return MetaResult::Unknown
            }
            Err(e) => {
                tracing::warn!(error = %e, "meta unreachable");
                return MetaResult::Transient(Value::Null);
            }
        };
        if answer.status >= 500 && method == reqwest::Method::POST {
            return MetaResult::Unknown;
        }
        let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        classify(answer.status, body)
    }

    fn account(&self) -> &str {
        &self.conn.account_id
    }

    /// `GET /{ig-user-id}/content_publishing_limit`.
    pub async fn quota(&self) -> MetaResult {
        let q = [("fields".to_string(), "config,quota_usage".to_string())];
        self.call(
            reqwest::Method::GET,
            &[self.account(), "content_publishing_limit"],
            &q,
            None,
        )
        .await
    }

    /// `POST /{ig-user-id}/media`: one container, its id.
    pub async fn create_container(&self, params: Vec<(String, String)>) -> MetaResult {
        self.call(
            reqwest::Method::POST,
            &[self.account(), "media"],
            &[],
            Some(params),
        )
        .await
    }

    /// `GET /{container-id}?fields=status_code,status`.
    pub async fn container_status(&self, container: &str) -> MetaResult {
        let q = [("fields".to_string(), "status_code,status".to_string())];
        self.call(reqwest::Method::GET, &[container], &q, None)
            .await
    }

    /// `POST /{ig-user-id}/media_publish?creation_id=`.
    pub async fn media_publish(&self, container: &str) -> MetaResult {
        let form = vec![("creation_id".to_string(), container.to_string())];
        self.call(
            reqwest::Method::POST,
            &[self.account(), "media_publish"],
            &[],
            Some(form),
        )
        .await
    }

    /// `GET /{ig-media-id}?fields=permalink`.
    pub async fn permalink(&self, media_id: &str) -> Option<String> {
        let q = [("fields".to_string(), "permalink".to_string())];
        match self.call(reqwest::Method::GET, &[media_id], &q, None).await {
            MetaResult::Ok(body) => body.get("permalink")?.as_str().map(str::to_string),
            _ => None,
        }
    }
}

fn pair(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// The options a container takes, as form values (lists as JSON text).
fn option_pairs(post: &NewPost, allowed: &[&str]) -> Vec<(String, String)> {
    let Some(options) = post.options.as_object() else {
        return vec![];
    };
    options
        .iter()
        .filter(|(k, _)| allowed.contains(&k.as_str()))
        .map(|(k, v)| match v {
            Value::String(s) => pair(k, s.clone()),
            other => pair(k, other.to_string()),
        })
        .collect()
}

/// The parameters of a single post's container (feed image or video,
/// reel, story).
pub(crate) fn single_params(post: &NewPost) -> Vec<(String, String)> {
    let media = &post.media[0];
    let mut p = Vec::new();
    let url_key = match media.kind {
        MediaKind::Image => "image_url",
        MediaKind::Video => "video_url",
    };
    p.push(pair(url_key, media.url.clone()));
    match (post.post_type, media.kind) {
        (PostType::Story, _) => {
            p.push(pair("media_type", "STORIES"));
            p.extend(option_pairs(post, &["user_tags"]));
            return p;
        }
        // Single feed videos publish as reels (META_PLATFORM.md).
        (_, MediaKind::Video) => {
            p.push(pair("media_type", "REELS"));
            let keys = [
                "share_to_feed",
                "cover_url",
                "thumb_offset",
                "location_id",
                "user_tags",
                "collaborators",
            ];
            p.extend(option_pairs(post, &keys));
        }
        (_, MediaKind::Image) => {
            let keys = ["alt_text", "location_id", "user_tags", "collaborators"];
            p.extend(option_pairs(post, &keys));
        }
    }
    if let Some(c) = &post.caption {
        p.push(pair("caption", c.clone()));
    }
    p
}

/// The parameters of carousel item `i`.
pub(crate) fn child_params(post: &NewPost, i: usize) -> Vec<(String, String)> {
    let media = &post.media[i];
    let mut p = vec![pair("is_carousel_item", "true")];
    match media.kind {
        MediaKind::Image => p.push(pair("image_url", media.url.clone())),
        MediaKind::Video => {
            p.push(pair("media_type", "VIDEO"));
            p.push(pair("video_url", media.url.clone()));
        }
    }
    p
}

/// The parameters of a carousel's parent container.
pub(crate) fn parent_params(post: &NewPost, children: &[String]) -> Vec<(String, String)> {
    let mut p = vec![
        pair("media_type", "CAROUSEL"),
        pair("children", children.join(",")),
    ];
    p.extend(option_pairs(
        post,
        &["share_to_feed", "location_id", "collaborators"],
    ));
    if let Some(c) = &post.caption {
        p.push(pair("caption", c.clone()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::post::Media;
    use serde_json::json;

    fn post(t: PostType, kinds: &[MediaKind], caption: Option<&str>) -> NewPost {
        NewPost {
            post_type: t,
            media: kinds
                .iter()
                .map(|k| Media {
                    kind: *k,
                    url: "https://cdn.example.com/m".into(),
                })
                .collect(),
            caption: caption.map(str::to_string),
            publish_at: None,
            options: json!({"share_to_feed": false, "alt_text": "a cat", "collaborators": ["x"]}),
        }
    }

    fn has(p: &[(String, String)], k: &str, v: &str) -> bool {
        p.iter().any(|(a, b)| a == k && b == v)
    }

    #[test]
    fn each_post_type_makes_its_containers() {
        let image = single_params(&post(PostType::Feed, &[MediaKind::Image], Some("hi")));
        assert!(
            has(&image, "image_url", "https://cdn.example.com/m") && has(&image, "caption", "hi")
        );
        assert!(has(&image, "alt_text", "a cat") && has(&image, "collaborators", "[\"x\"]"));
        assert!(!image
            .iter()
            .any(|(k, _)| k == "media_type" || k == "share_to_feed"));
        let reel = single_params(&post(PostType::Reel, &[MediaKind::Video], None));
        assert!(has(&reel, "media_type", "REELS") && has(&reel, "share_to_feed", "false"));
        assert!(!reel.iter().any(|(k, _)| k == "alt_text"));
        let story = single_params(&post(PostType::Story, &[MediaKind::Video], None));
        assert!(
            has(&story, "media_type", "STORIES")
                && has(&story, "video_url", "https://cdn.example.com/m")
        );
        assert!(!story
            .iter()
            .any(|(k, _)| k == "caption" || k == "collaborators"));
        let carousel = post(
            PostType::Feed,
            &[MediaKind::Image, MediaKind::Video],
            Some("c"),
        );
        let child = child_params(&carousel, 1);
        assert!(has(&child, "is_carousel_item", "true") && has(&child, "media_type", "VIDEO"));
        assert!(!child.iter().any(|(k, _)| k == "caption"));
        let parent = parent_params(&carousel, &["1".into(), "2".into()]);
        assert!(
            has(&parent, "media_type", "CAROUSEL")
                && has(&parent, "children", "1,2")
                && has(&parent, "caption", "c")
        );
    }
}
