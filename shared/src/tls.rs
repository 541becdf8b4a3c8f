//! The TLS roots the service's clients trust, compiled in (Mozilla's root
//! program, `webpki-root-certs`) rather than read from the system's store at
//! every start: reading and parsing `/etc/ssl/certs` (the bundle, then every
//! file of the directory) was about half of a function's init (issue 19,
//! docs/benchmarks.md). Verification is unchanged: the whole chain up to one
//! of these roots, and the host name.
//!
//! - Meta and the product's webhook endpoints: every root of the program.
//! - AWS: only Amazon Trust Services' roots (Amazon Root CA 1 to 4 and the
//!   Starfield Services G2 root that cross-signs them), which every AWS
//!   service endpoint chains to since S3 moved in 2022. Trusting fewer roots
//!   is stricter, and the SDK takes roots only as PEM, whose decoding cost
//!   about 2 ms per start for the whole program.

use base64::Engine;

/// Every root, for a reqwest client (`ClientBuilder::tls_certs_only`).
fn reqwest_roots() -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect()
}

/// An HTTPS client that could not be built (its TLS set-up failed): the
/// function refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("an HTTPS client could not be built: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// `builder`'s client, trusting every root of the program (and nothing
/// from the system's store).
pub fn https_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, ClientError> {
    Ok(builder.tls_certs_only(reqwest_roots()?).build()?)
}

/// Subjects of Amazon Trust Services' roots.
const AMAZON_ROOTS: [&[u8]; 2] = [b"Amazon Root CA ", b"Starfield Services Root Certificate"];

fn is_amazon_root(der: &[u8]) -> bool {
    // Compared where the first byte matches only: a slice comparison at
    // every offset of every root cost about 0.3 ms per start.
    AMAZON_ROOTS.iter().any(|name| {
        der.windows(name.len())
            .any(|w| w[0] == name[0] && w == *name)
    })
}

/// Amazon Trust Services' roots as one PEM bundle: the only form the AWS
/// SDK's HTTP client takes roots in.
pub fn aws_pem_bundle() -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter();
    for der in roots.filter(|der| is_amazon_root(der)) {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(der);
        // Base64 is ASCII: every 64th byte is a character boundary.
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let (line, after) = rest.split_at(rest.len().min(64));
            pem.push_str(line);
            pem.push('\n');
            rest = after;
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_gets_amazon_trust_services_roots_unchanged() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let decoded: Vec<Vec<u8>> = aws_pem_bundle()
            .split("-----BEGIN CERTIFICATE-----\n")
            .skip(1)
            .map(|block| {
                let body = block.split("-----END CERTIFICATE-----").next().unwrap();
                b64.decode(body.replace('\n', "")).unwrap()
            })
            .collect();
        let amazon: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| der.as_ref())
            .filter(|der| is_amazon_root(der))
            .collect();
        // Amazon Root CA 1 to 4 and Starfield Services Root CA G2.
        assert_eq!(amazon.len(), 5);
        assert_eq!(decoded, amazon);
        for n in 1..=4 {
            let name = format!("Amazon Root CA {n}");
            assert!(amazon
                .iter()
                .any(|der| der.windows(name.len()).any(|w| w == name.as_bytes())));
        }
    }

    #[test]
    fn meta_and_endpoints_get_every_root() {
        let all = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(all > 100, "Mozilla's program has well over 100 roots");
        assert_eq!(reqwest_roots().unwrap().len(), all);
    }
}
