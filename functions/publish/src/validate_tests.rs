use super::*;
use serde_json::json;
use shared::time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

fn image(url: &str) -> Value {
    json!({"kind": "image", "url": url})
}

fn video(url: &str) -> Value {
    json!({"kind": "video", "url": url})
}

fn refused(body: Value) -> Invalid {
    validate(
        &body,
        NOW,
        Some("s3://media/uploads/0123456789abcdef0123456789abcdef/"),
    )
    .unwrap_err()
}

fn field(body: Value) -> String {
    refused(body).field
}

#[test]
fn a_feed_image_with_a_caption_passes_and_a_past_time_means_now() {
    let post = validate(
        &json!({"type": "feed", "media": [image("https://cdn.example.com/a.jpg")],
            "caption": "Hello #one @two", "publish_at": "2026-11-20T09:00:00Z"}),
        NOW,
        None,
    )
    .unwrap();
    assert_eq!(post.post_type, PostType::Feed);
    assert_eq!(post.publish_at, None);
    assert_eq!(post.caption.as_deref(), Some("Hello #one @two"));
    let later = validate(
        &json!({"type": "feed", "media": [image("https://cdn.example.com/a.jpg")],
            "publish_at": "2026-11-22T09:00:00+01:00"}),
        NOW,
        None,
    )
    .unwrap();
    assert_eq!(later.publish_at, Some(datetime!(2026-11-22 08:00:00 UTC)));
}

#[test]
fn types_take_their_media_counts() {
    let img = image("https://cdn.example.com/a.jpg");
    let vid = video("https://cdn.example.com/a.mp4");
    let many = |n: usize| vec![img.clone(); n];
    for ok in [
        json!({"type": "feed", "media": many(1)}),
        json!({"type": "feed", "media": many(2)}),
        json!({"type": "feed", "media": many(10)}),
        json!({"type": "feed", "media": [vid.clone()]}),
        json!({"type": "reel", "media": [vid.clone()]}),
        json!({"type": "story", "media": [img.clone()]}),
        json!({"type": "story", "media": [vid.clone()]}),
    ] {
        assert!(validate(&ok, NOW, None).is_ok(), "{ok}");
    }
    for bad in [
        json!({"type": "feed", "media": []}),
        json!({"type": "feed", "media": many(11)}),
        json!({"type": "reel", "media": [img.clone()]}),
        json!({"type": "reel", "media": [vid.clone(), vid.clone()]}),
        json!({"type": "story", "media": many(2)}),
    ] {
        assert_eq!(field(bad.clone()), "$.media", "{bad}");
    }
    assert_eq!(field(json!({"type": "post", "media": many(1)})), "$.type");
    assert_eq!(field(json!({"media": many(1)})), "$.type");
    assert_eq!(
        field(
            json!({"type": "feed", "media": [{"kind": "gif", "url": "https://a.example.com/x"}]})
        ),
        "$.media[0].kind"
    );
    assert_eq!(
        field(json!({"type": "feed", "media": many(1), "extra": 1})),
        "$.extra"
    );
}

#[test]
fn captions_are_bounded_and_stories_have_none() {
    let post = |caption: String| json!({"type": "feed", "media": [image("https://cdn.example.com/a.jpg")], "caption": caption});
    assert!(validate(&post("é".repeat(2_200)), NOW, None).is_ok());
    assert_eq!(refused(post("é".repeat(2_201))).field, "$.caption");
    let tags = |mark: &str, n: usize| {
        (0..n)
            .map(|i| format!("{mark}t{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(validate(&post(tags("#", 30)), NOW, None).is_ok());
    assert!(refused(post(tags("#", 31))).message.contains("30 hashtags"));
    assert!(validate(&post(tags("@", 20)), NOW, None).is_ok());
    assert!(refused(post(tags("@", 21)))
        .message
        .contains("20 @-mentions"));
    // An e-mail address or a lone sign is not a mention or a tag.
    assert_eq!(tags_of("write to a@b.com # and @ ##x"), (0, 0));
    assert_eq!(tags_of("#a#b @c,@d"), (1, 2));
    let story = json!({"type": "story", "media": [image("https://cdn.example.com/a.jpg")], "caption": "hi"});
    assert_eq!(field(story), "$.caption");
}

fn tags_of(s: &str) -> (usize, usize) {
    tags(s)
}

#[test]
fn publish_at_is_at_most_75_days_ahead() {
    let post = |at: &str| json!({"type": "feed", "media": [image("https://cdn.example.com/a.jpg")], "publish_at": at});
    assert!(validate(&post("2027-02-04T12:00:00Z"), NOW, None).is_ok());
    assert_eq!(field(post("2027-02-04T12:00:01Z")), "$.publish_at");
    assert_eq!(field(post("tomorrow")), "$.publish_at");
}

#[test]
fn media_urls_are_public_https_or_our_uploads() {
    for bad in [
        "http://cdn.example.com/a.jpg",
        "https://127.0.0.1/a.jpg",
        "https://[::1]/a.jpg",
        "https://10.0.0.8/a.jpg",
        "https://localhost/a.jpg",
        "https://media.localhost/a.jpg",
        "https://intranet/a.jpg",
        "https://user:pw@cdn.example.com/a.jpg",
        "ftp://cdn.example.com/a.jpg",
        "not a url",
    ] {
        let body =
            json!({"type": "feed", "media": [image("https://cdn.example.com/ok.jpg"), image(bad)]});
        assert_eq!(field(body), "$.media[1].url", "{bad}");
    }
}

#[test]
fn an_upload_is_named_by_its_media_url_from_this_connection_and_of_its_kind() {
    let prefix = Some("s3://media/uploads/0123456789abcdef0123456789abcdef/");
    let id = "s3://media/uploads/0123456789abcdef0123456789abcdef/00112233445566778899aabbccddeeff";
    let jpg = format!("{id}.jpg");
    let mp4 = format!("{id}.mp4");
    let ok = json!({"type": "reel", "media": [video(&mp4)], "options": {"cover_url": jpg}});
    assert!(validate(&ok, NOW, prefix).is_ok());
    assert!(validate(
        &json!({"type": "story", "media": [image(&jpg)]}),
        NOW,
        prefix
    )
    .is_ok());
    let post = |url: &str| json!({"type": "feed", "media": [image(url)]});
    for bad in [
        // Another connection's, another bucket's, or no uploads configured.
        "s3://media/uploads/ffffffffffffffffffffffffffffffff/00112233445566778899aabbccddeeff.jpg",
        "s3://other/uploads/0123456789abcdef0123456789abcdef/00112233445566778899aabbccddeeff.jpg",
        // Not a name the service made.
        &format!("{id}/../x.jpg"),
        &format!("{id}.jpeg"),
        "s3://media/uploads/0123456789abcdef0123456789abcdef/a.jpg",
        // A video named as an image.
        &mp4,
    ] {
        assert_eq!(
            validate(&post(bad), NOW, prefix).unwrap_err().field,
            "$.media[0].url",
            "{bad}"
        );
    }
    assert!(
        validate(&post(&jpg), NOW, None).is_err(),
        "no uploads configured"
    );
    // Uploads are deleted after 7 days: a post naming one is at most 6 ahead.
    let at = |t: &str, url: &str| json!({"type": "feed", "media": [image(url)], "publish_at": t});
    assert!(validate(&at("2026-11-27T12:00:00Z", &jpg), NOW, prefix).is_ok());
    assert_eq!(
        validate(&at("2026-11-27T12:00:01Z", &jpg), NOW, prefix)
            .unwrap_err()
            .field,
        "$.publish_at"
    );
    let linked = at("2027-01-20T12:00:00Z", "https://cdn.example.com/a.jpg");
    assert!(validate(&linked, NOW, prefix).is_ok());
    let cover = json!({"type": "reel", "media": [video(&mp4)], "options": {"cover_url": mp4}});
    assert_eq!(
        validate(&cover, NOW, prefix).unwrap_err().field,
        "$.options.cover_url"
    );
}

#[test]
fn options_are_known_and_well_formed() {
    let post = |options: Value| json!({"type": "reel", "media": [video("https://cdn.example.com/a.mp4")], "options": options});
    let ok = post(
        json!({"share_to_feed": true, "cover_url": "https://cdn.example.com/c.jpg", "thumb_offset": 1500,
        "location_id": "123", "alt_text": "a", "collaborators": ["x", "y"],
        "user_tags": [{"username": "x", "x": 0.5, "y": 1.0}]}),
    );
    assert!(validate(&ok, NOW, None).is_ok());
    for (bad, at) in [
        (json!({"share_to_feed": "yes"}), "$.options.share_to_feed"),
        (
            json!({"cover_url": "http://x.example.com/c.jpg"}),
            "$.options.cover_url",
        ),
        (json!({"thumb_offset": -1}), "$.options.thumb_offset"),
        (
            json!({"collaborators": ["a", "b", "c", "d"]}),
            "$.options.collaborators",
        ),
        (
            json!({"user_tags": [{"username": "x", "x": 2.0, "y": 0.1}]}),
            "$.options.user_tags",
        ),
        (json!({"alt_text": "a".repeat(1_001)}), "$.options.alt_text"),
        (
            json!({"scheduled_publish_time": 1}),
            "$.options.scheduled_publish_time",
        ),
    ] {
        assert_eq!(field(post(bad)), at);
    }
    assert_eq!(field(post(json!([1]))), "$.options");
}
