//! Every rule a post must pass before it is stored (CONTRACT.md,
//! "Publishing"): types and media counts, the caption's limits, the time
//! window, and where media may come from. A refusal names the field by its
//! JSON path.

use serde_json::{Map, Value};
use shared::time::{Duration, OffsetDateTime};
use url::{Host, Url};

use crate::post::{Media, MediaKind, NewPost, PostType};

pub const MAX_CAPTION_CHARS: usize = 2_200;
pub const MAX_HASHTAGS: usize = 30;
pub const MAX_MENTIONS: usize = 20;
pub const MAX_CAROUSEL: usize = 10;
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(75);
const MAX_ALT_TEXT_CHARS: usize = 1_000;
const MAX_COLLABORATORS: usize = 3;

/// A refusal: `400 {"error": "invalid_post", "field", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

const FIELDS: [&str; 5] = ["type", "media", "caption", "publish_at", "options"];

/// The post in `body`, or the first rule it breaks. `uploads` is the prefix
/// of the service's own upload URLs (`None`: no uploads configured).
pub fn validate(
    body: &Value,
    now: OffsetDateTime,
    uploads: Option<&str>,
) -> Result<NewPost, Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("$", "the post must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!("$.{unknown}"), "unknown field"));
    }
    let post_type = match obj.get("type").and_then(Value::as_str) {
        Some("feed") => PostType::Feed,
        Some("reel") => PostType::Reel,
        Some("story") => PostType::Story,
        _ => return Err(invalid("$.type", "type must be feed, reel or story")),
    };
    let media = media(obj.get("media"), uploads)?;
    counts(post_type, &media)?;
    let caption = caption(post_type, obj.get("caption"))?;
    let publish_at = publish_at(obj.get("publish_at"), now)?;
    let options = options(obj.get("options"), uploads)?;
    let post = NewPost {
        post_type,
        media,
        caption,
        publish_at,
        options,
    };
    uploads_kept_until(&post, now)?;
    Ok(post)
}

/// A post naming an upload is published at most this far ahead: the bucket
/// deletes uploads after 7 days (and a video's containers are made an hour
/// before `publish_at`).
pub const MAX_UPLOAD_AHEAD: Duration = Duration::days(6);

fn uploads_kept_until(post: &NewPost, now: OffsetDateTime) -> Result<(), Invalid> {
    let cover = post.options.get("cover_url").and_then(Value::as_str);
    let names_upload = post
        .media
        .iter()
        .map(|m| m.url.as_str())
        .chain(cover)
        .any(|u| u.starts_with("s3://"));
    if names_upload
        && post
            .publish_at
            .is_some_and(|at| at > now + MAX_UPLOAD_AHEAD)
    {
        return Err(invalid(
            "$.publish_at",
            "a post with an upload is published at most 6 days ahead (uploads are deleted after 7 days)",
        ));
    }
    Ok(())
}

fn media(value: Option<&Value>, uploads: Option<&str>) -> Result<Vec<Media>, Invalid> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("$.media", "media must be a list of {kind, url}"))?;
    let mut media = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("$.media[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(&at, "each media item is {kind, url}"))?;
        if let Some(unknown) = obj.keys().find(|k| *k != "kind" && *k != "url") {
            return Err(invalid(format!("{at}.{unknown}"), "unknown field"));
        }
        let kind = match obj.get("kind").and_then(Value::as_str) {
            Some("image") => MediaKind::Image,
            Some("video") => MediaKind::Video,
            _ => return Err(invalid(format!("{at}.kind"), "kind must be image or video")),
        };
        let url = obj.get("url").and_then(Value::as_str).unwrap_or_default();
        media_url(url, kind, uploads).map_err(|m| invalid(format!("{at}.url"), m))?;
        media.push(Media {
            kind,
            url: url.to_string(),
        });
    }
    Ok(media)
}

/// A URL Meta can fetch: `https`, a host name that is neither an IP literal
/// nor `localhost`; or one of this connection's uploads (`uploads` is their
/// prefix, `s3://<bucket>/uploads/<scope>/`) of the right kind.
pub fn media_url(url: &str, kind: MediaKind, uploads: Option<&str>) -> Result<(), &'static str> {
    if url.starts_with("s3://") {
        let name = uploads
            .filter(|prefix| !prefix.is_empty())
            .and_then(|prefix| url.strip_prefix(prefix))
            .ok_or("not one of this connection's uploads")?;
        return match crate::uploads::kind_of_name(name) {
            Some(k) if k == kind => Ok(()),
            Some(_) => Err("this upload is not of the media's kind"),
            None => Err("not one of this connection's uploads"),
        };
    }
    let parsed = Url::parse(url).map_err(|_| "the URL does not parse")?;
    if parsed.scheme() != "https" {
        return Err("media URLs must be https");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("media URLs may not carry credentials");
    }
    match parsed.host() {
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") || !d.contains('.') {
                return Err("the host must be a public name, not localhost");
            }
            Ok(())
        }
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => Err("the host must be a name, not an IP address"),
        None => Err("the URL has no host"),
    }
}

fn counts(post_type: PostType, media: &[Media]) -> Result<(), Invalid> {
    let n = media.len();
    match post_type {
        PostType::Feed if n == 1 || (2..=MAX_CAROUSEL).contains(&n) => Ok(()),
        PostType::Feed => Err(invalid(
            "$.media",
            "a feed post has one image or video, or 2 to 10 items (a carousel)",
        )),
        PostType::Reel if n == 1 && media[0].kind == MediaKind::Video => Ok(()),
        PostType::Reel => Err(invalid("$.media", "a reel is one video")),
        PostType::Story if n == 1 => Ok(()),
        PostType::Story => Err(invalid("$.media", "a story is one image or video")),
    }
}

/// Hashtags and @-mentions in a caption: a `#`/`@` that starts a word and is
/// followed by a word character.
pub fn tags(caption: &str) -> (usize, usize) {
    let chars: Vec<char> = caption.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let (mut hashtags, mut mentions) = (0, 0);
    for (i, c) in chars.iter().enumerate() {
        let starts = i == 0 || !(word(chars[i - 1]) || chars[i - 1] == '#' || chars[i - 1] == '@');
        let followed = chars.get(i + 1).is_some_and(|n| word(*n) || *n == '.');
        match c {
            '#' if starts && followed => hashtags += 1,
            '@' if starts && followed => mentions += 1,
            _ => {}
        }
    }
    (hashtags, mentions)
}

fn caption(post_type: PostType, value: Option<&Value>) -> Result<Option<String>, Invalid> {
    let caption = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("$.caption", "caption must be a string")),
    };
    if post_type == PostType::Story {
        return Err(invalid("$.caption", "stories take no caption"));
    }
    if caption.chars().count() > MAX_CAPTION_CHARS {
        return Err(invalid("$.caption", "at most 2,200 characters"));
    }
    let (hashtags, mentions) = tags(caption);
    if hashtags > MAX_HASHTAGS {
        return Err(invalid("$.caption", "at most 30 hashtags"));
    }
    if mentions > MAX_MENTIONS {
        return Err(invalid("$.caption", "at most 20 @-mentions"));
    }
    Ok(Some(caption.clone()))
}

/// `None` (now) for null or a past time; at most 75 days ahead.
fn publish_at(
    value: Option<&Value>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, Invalid> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("$.publish_at", "an RFC 3339 time or null")),
    };
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid("$.publish_at", "an RFC 3339 time or null"))?
        .to_offset(time::UtcOffset::UTC);
    if at > now + MAX_SCHEDULE_AHEAD {
        return Err(invalid("$.publish_at", "at most 75 days ahead"));
    }
    Ok((at > now).then_some(at))
}

fn options(value: Option<&Value>, uploads: Option<&str>) -> Result<Value, Invalid> {
    let obj = match value {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid("$.options", "options must be an object")),
    };
    for (k, v) in obj {
        let at = format!("$.options.{k}");
        let ok = match k.as_str() {
            "share_to_feed" => v.is_boolean(),
            "cover_url" => {
                let url = v.as_str().unwrap_or_default();
                media_url(url, MediaKind::Image, uploads).map_err(|m| invalid(&at, m))?;
                true
            }
            "thumb_offset" => v.as_u64().is_some(),
            "location_id" => v.as_str().is_some_and(|s| !s.is_empty()),
            "alt_text" => v
                .as_str()
                .is_some_and(|s| s.chars().count() <= MAX_ALT_TEXT_CHARS),
            "collaborators" => v
                .as_array()
                .is_some_and(|a| a.len() <= MAX_COLLABORATORS && a.iter().all(Value::is_string)),
            "user_tags" => v.as_array().is_some_and(|a| a.iter().all(user_tag)),
            _ => return Err(invalid(at, "unknown option")),
        };
        if !ok {
            return Err(invalid(at, "not a valid value for this option"));
        }
    }
    Ok(Value::Object(obj.clone()))
}

fn user_tag(tag: &Value) -> bool {
    let coord = |k: &str| {
        tag.get(k)
            .and_then(Value::as_f64)
            .is_some_and(|v| (0.0..=1.0).contains(&v))
    };
    tag.get("username").and_then(Value::as_str).is_some() && coord("x") && coord("y")
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
