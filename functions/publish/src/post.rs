//! A post: what the product asked for (validated in `validate`), where the
//! container flow is, and the contract's Post JSON.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shared::clock::rfc3339;
use shared::time::OffsetDateTime;
use shared::Provider;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostType {
    Feed,
    Reel,
    Story,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub kind: MediaKind,
    pub url: String,
}

/// A post as the product asked for it, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPost {
    #[serde(rename = "type")]
    pub post_type: PostType,
    pub media: Vec<Media>,
    pub caption: Option<String>,
    /// `None`: now.
    #[serde(with = "time::serde::rfc3339::option")]
    pub publish_at: Option<OffsetDateTime>,
    /// The options as sent (each checked), a JSON object.
    pub options: Value,
}

impl NewPost {
    pub fn has_video(&self) -> bool {
        self.media.iter().any(|m| m.kind == MediaKind::Video)
    }

    pub fn is_carousel(&self) -> bool {
        self.media.len() > 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scheduled,
    Publishing,
    Processing,
    WaitingForQuota,
    Published,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Publishing => "publishing",
            Self::Processing => "processing",
            Self::WaitingForQuota => "waiting_for_quota",
            Self::Published => "published",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }

    /// Nothing more happens to the post.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Published | Self::Failed | Self::Cancelled)
    }
}

/// Why a post failed, with Meta's words when Meta gave them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub meta: Value,
}

/// The containers made for a post at Meta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Containers {
    /// Carousel children, in order (empty otherwise).
    pub children: Vec<String>,
    /// The container `media_publish` publishes.
    pub parent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A stored post.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Post {
    pub post_id: String,
    pub user_id: String,
    #[serde(with = "provider_name")]
    pub provider: Provider,
    pub account_id: String,
    #[serde(flatten)]
    pub request: NewPost,
    pub status: Status,
    pub containers: Option<Containers>,
    /// Set (and written) before `media_publish` is called; cleared only when
    /// Meta answered that it did not publish.
    pub publish_attempted: bool,
    /// Failed attempts in a row that may pass (Meta unreachable, 5xx).
    pub transient_failures: u32,
    pub media_id: Option<String>,
    pub permalink: Option<String>,
    pub error: Option<Failure>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    /// Bumped by every write; writes are conditional on it.
    #[serde(default)]
    pub version: u64,
}

impl Post {
    /// The contract's Post JSON.
    pub fn view(&self) -> Value {
        json!({
            "post_id": self.post_id,
            "provider": self.provider.as_str(),
            "account_id": self.account_id,
            "type": self.request.post_type,
            "media": self.request.media,
            "caption": self.request.caption,
            "publish_at": self.request.publish_at.map(rfc3339),
            "options": self.request.options,
            "status": self.status.as_str(),
            "media_id": self.media_id,
            "permalink": self.permalink,
            "error": self.error,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "published_at": self.published_at.map(rfc3339),
        })
    }
}

/// A provider stored by its name.
mod provider_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use shared::Provider;

    pub fn serialize<S: Serializer>(p: &Provider, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
        let name = String::deserialize(d)?;
        Provider::parse(&name).ok_or_else(|| D::Error::custom("unknown provider"))
    }
}
