//! The consent pages (both providers): what the person sees, and the
//! redirect back with a code or `access_denied`.

#![allow(clippy::result_large_err)]

use super::*;

#[derive(serde::Deserialize, Clone, Debug)]
pub(super) struct ConsentQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
    /// "instagram" or "facebook" (set from the path, or the consent form).
    #[serde(default)]
    provider: String,
    /// On the Instagram consent page, the person may log in as another account.
    #[serde(default)]
    as_username: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

impl ConsentQuery {
    pub(super) fn from_url(u: &str) -> Option<Self> {
        let url = Url::parse(u).ok()?;
        let provider = if url.path().contains("/www.instagram.com/") {
            "instagram"
        } else if url.path().contains("/dialog/oauth") {
            "facebook"
        } else {
            return None;
        };
        let mut q: Self = serde_urlencoded(url.query().unwrap_or_default())?;
        q.provider = provider.into();
        Some(q)
    }
}

pub(super) fn pkce_s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

pub(super) fn serde_urlencoded<T: serde::de::DeserializeOwned>(q: &str) -> Option<T> {
    let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(Value::Object(map)).ok()
}

/// The configured person, or (from the consent form) another account whose
/// ids derive from its username, so a demo can connect as many as it likes.
pub(super) fn ig_person_for(i: &Inner, q: &ConsentQuery) -> IgPerson {
    match q.as_username.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() && name != i.ig_person.username => {
            let h = name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 1_000_000_000;
            IgPerson {
                app_scoped_id: format!("26000001{h:09}"),
                account_id: format!("17841401{h:09}"),
                username: name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .take(30)
                    .collect(),
            }
        }
        _ => i.ig_person.clone(),
    }
}

pub(super) fn decide(i: &mut Inner, q: &ConsentQuery, approve: bool) -> Result<Url, String> {
    let (expected, grant) = match q.provider.as_str() {
        "instagram" => (
            &i.apps.instagram_app_id,
            Grant::Instagram(ig_person_for(i, q)),
        ),
        "facebook" => (
            &i.apps.facebook_app_id,
            Grant::Facebook(i.fb_person.clone()),
        ),
        _ => return Err("unknown dialog".into()),
    };
    if &q.client_id != expected {
        return Err("Invalid app ID".into());
    }
    let mut redirect = Url::parse(&q.redirect_uri).map_err(|_| "Invalid redirect_uri")?;
    if q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    if approve {
        let code = secret(if q.provider == "instagram" {
            "AQ"
        } else {
            "AQF"
        });
        i.issued.push(code.clone());
        i.codes.insert(
            code.clone(),
            Code {
                grant,
                client_id: q.client_id.clone(),
                redirect_uri: q.redirect_uri.clone(),
                used: false,
                code_challenge: q.code_challenge.clone(),
            },
        );
        redirect
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q.state);
        if q.provider == "instagram" {
            redirect.set_fragment(Some("_"));
        }
    } else {
        redirect
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_reason", "user_denied")
            .append_pair("error_description", "Permissions error")
            .append_pair("state", &q.state);
    }
    Ok(redirect)
}

pub(super) async fn consent_instagram(
    Query(mut q): Query<ConsentQuery>,
    State(s): State<Shared>,
) -> Response {
    q.provider = "instagram".into();
    consent_page(q, &s)
}

pub(super) async fn consent_facebook(
    Path(_v): Path<String>,
    Query(mut q): Query<ConsentQuery>,
    State(s): State<Shared>,
) -> Response {
    q.provider = "facebook".into();
    consent_page(q, &s)
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn consent_page(q: ConsentQuery, s: &Shared) -> Response {
    let i = s.lock().unwrap();
    let (expected, who, brand) = app_and_person(&i, &q.provider);
    if &q.client_id != expected {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>Invalid app ID</h1>".to_string()),
        )
            .into_response();
    }
    let fields = hidden_fields(&q);
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{brand} (emulated)</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}button{{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}}</style></head>
<body><h1>{brand} — emulated consent</h1>
<form method="post" action="/consent">{fields}
<p>Logged in as <b>{who}</b>.</p>{switch}
<p>The app <code>{app}</code> asks for: <code>{scope}</code></p>
<button name="decision" value="approve" id="approve">Allow</button>
<button name="decision" value="deny" id="deny">Cancel</button></form>
<p><small>This page stands in for Meta on the local stack. Nothing leaves this machine.</small></p>
</body></html>"#,
        app = esc(&q.client_id),
        scope = esc(&q.scope),
        who = esc(&who),
        switch = if q.provider == "instagram" {
            format!(
                r#"<p><label>Or log in as @<input name="as_username" id="as_username" value="{}"></label></p>"#,
                esc(&i.ig_person.username)
            )
        } else {
            String::new()
        },
    ))
    .into_response()
}

/// The provider's app id (the one the request must name), who is logged in,
/// and the brand.
fn app_and_person<'a>(i: &'a Inner, provider: &str) -> (&'a String, String, &'static str) {
    match provider {
        "instagram" => (
            &i.apps.instagram_app_id,
            format!("@{}", i.ig_person.username),
            "Instagram",
        ),
        _ => (
            &i.apps.facebook_app_id,
            format!(
                "{} ({} Pages: {})",
                i.fb_person.name,
                i.fb_person.pages.len(),
                i.fb_person
                    .pages
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "Facebook",
        ),
    }
}

/// The request's parameters, carried through the form.
fn hidden_fields(q: &ConsentQuery) -> String {
    let hidden = |name: &str, value: &str| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            esc(value)
        )
    };
    [
        hidden("provider", &q.provider),
        hidden("client_id", &q.client_id),
        hidden("redirect_uri", &q.redirect_uri),
        hidden("state", &q.state),
        hidden("scope", &q.scope),
        q.code_challenge
            .as_deref()
            .map(|c| hidden("code_challenge", c))
            .unwrap_or_default(),
        q.code_challenge_method
            .as_deref()
            .map(|m| hidden("code_challenge_method", m))
            .unwrap_or_default(),
    ]
    .join("")
}

#[derive(serde::Deserialize)]
pub(super) struct Decision {
    #[serde(flatten)]
    q: ConsentQuery,
    decision: String,
}

pub(super) async fn consent_decision(State(s): State<Shared>, Form(d): Form<Decision>) -> Response {
    let result = decide(&mut s.lock().unwrap(), &d.q, d.decision == "approve");
    match result {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}
