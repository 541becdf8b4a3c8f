//! The invariant, on arbitrary input: a refused request never yields a
//! URL; an accepted one always yields a URL on the provider's Graph host,
//! under the version, with exactly the checked segments.
use super::*;
use proptest::prelude::*;

fn urls() -> crate::config::MetaUrls {
    crate::config::MetaUrls {
        facebook: "https://www.facebook.com".into(),
        graph: "https://graph.facebook.com".into(),
        instagram: "https://www.instagram.com".into(),
        instagram_api: "https://api.instagram.com".into(),
        instagram_graph: "https://graph.instagram.com".into(),
    }
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        // Anything at all.
        any::<String>(),
        // Mostly-plausible paths built from risky pieces.
        prop::collection::vec(
            prop_oneof![
                Just("me".to_string()),
                Just("17841400000000001".to_string()),
                Just("p1".to_string()),
                Just("..".to_string()),
                Just(".".to_string()),
                Just("".to_string()),
                Just("%2F".to_string()),
                Just("%2e%2e".to_string()),
                Just("\\".to_string()),
                Just("@evil.com".to_string()),
                Just("https:".to_string()),
                Just("evil.com".to_string()),
                Just("subscribed_apps".to_string()),
                Just("media".to_string()),
                "[0-9]{1,20}",
                "[A-Za-z0-9_.:/?#@%-]{0,12}",
            ],
            0..7
        )
        .prop_map(|v| v.join("/")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]
    #[test]
    fn refused_never_leaves_accepted_stays_on_the_graph_host(
        facebook in any::<bool>(),
        method in prop_oneof![
            Just("GET".to_string()),
            Just("POST".to_string()),
            Just("DELETE".to_string()),
            Just("PUT".to_string()),
            ".{0,6}",
        ],
        path in path_strategy(),
        key in "[a-z_]{0,16}",
        value in ".{0,24}",
    ) {
        let subject = if facebook { FB_SUBJECT } else { IG_SUBJECT };
        let params = [(key.as_str(), value.as_str())];
        if let Ok(segments) = check(&subject, &method, &path, &params) {
            let urls = urls();
            let base = graph_base(subject.provider, &urls);
            let url = target_url(base, "v25.0", &segments).unwrap();
            let host = if facebook { "graph.facebook.com" } else { "graph.instagram.com" };
            prop_assert_eq!(url.host_str(), Some(host));
            prop_assert_eq!(url.scheme(), "https");
            prop_assert!(url.query().is_none());
            prop_assert_eq!(url.path(), format!("/v25.0/{path}"));
            let lower = format!("{path}{key}{value}").to_ascii_lowercase();
            prop_assert!(!lower.contains("access_token"));
            prop_assert!(!lower.contains("subscribed_apps"));
        }
    }
}

const IG_SUBJECT: Subject<'static> = Subject {
    provider: Provider::Instagram,
    account_id: "17841400000000001",
    page_id: None,
};
const FB_SUBJECT: Subject<'static> = Subject {
    provider: Provider::Facebook,
    account_id: "17841400000000021",
    page_id: Some("p1"),
};
