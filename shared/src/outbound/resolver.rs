//! The DNS resolver every delivery connects through: it resolves the host,
//! checks every address ([`address_allowed`]) and hands reqwest only what
//! passed, so the address connected to is the address checked (no second
//! lookup to rebind). A host with any refused address is refused whole.

use crate::tls::{https_client, ClientError};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::target::address_allowed;

/// The host resolved to an address a delivery may not connect to.
#[derive(Debug, thiserror::Error)]
#[error("refused_address")]
pub struct RefusedAddress;

/// How names are looked up: the system resolver, or a fixed table (tests).
#[derive(Clone, Debug)]
pub enum Lookup {
    System,
    Table(Arc<HashMap<String, Vec<IpAddr>>>),
}

/// A reqwest resolver that refuses internal addresses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    lookup: Lookup,
    allow_loopback: bool,
}

impl GuardedResolver {
    pub fn new(lookup: Lookup, allow_loopback: bool) -> Self {
        Self {
            lookup,
            allow_loopback,
        }
    }

    /// The addresses of `host`, every one of them allowed.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, BoxError> {
        let ips: Vec<IpAddr> = match &self.lookup {
            Lookup::System => tokio::net::lookup_host((host, 0))
                .await?
                .map(|a| a.ip())
                .collect(),
            Lookup::Table(table) => table.get(host).cloned().unwrap_or_default(),
        };
        if ips.is_empty() {
            return Err("no address".into());
        }
        if ips
            .iter()
            .any(|ip| !address_allowed(*ip, self.allow_loopback))
        {
            return Err(Box::new(RefusedAddress));
        }
        Ok(ips)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = this.resolve_checked(&host).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A delivery counts as failed when no `2xx` came within this.
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The client deliveries are sent with: through `resolver`, never through a
/// proxy (the proxy would connect where the resolver never looked), no
/// redirects followed, 15 seconds in all.
pub fn delivery_client(resolver: GuardedResolver) -> Result<reqwest::Client, ClientError> {
    delivery_client_timing_out(resolver, DELIVERY_TIMEOUT)
}

/// [`delivery_client`] with another timeout (tests of the timeout).
pub fn delivery_client_timing_out(
    resolver: GuardedResolver,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, ClientError> {
    https_client(
        reqwest::Client::builder()
            .dns_resolver(resolver)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("ig-connect/", env!("CARGO_PKG_VERSION"))),
    )
}

/// Whether `error` (or anything it wraps) is a [`RefusedAddress`].
pub fn is_refused_address(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if e.is::<RefusedAddress>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> Lookup {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (host, ip) in entries {
            map.entry(host.to_string())
                .or_default()
                .push(ip.parse().unwrap());
        }
        Lookup::Table(Arc::new(map))
    }

    #[tokio::test]
    async fn a_host_with_any_internal_address_is_refused() {
        let lookup = table(&[
            ("good.example", "93.184.215.14"),
            ("loop.example", "127.0.0.1"),
            ("meta.example", "169.254.169.254"),
            ("mapped.example", "::ffff:127.0.0.1"),
            ("mixed.example", "93.184.215.14"),
            ("mixed.example", "10.0.0.7"),
        ]);
        let r = GuardedResolver::new(lookup.clone(), false);
        assert!(r.resolve_checked("good.example").await.is_ok());
        for host in [
            "loop.example",
            "meta.example",
            "mapped.example",
            "mixed.example",
        ] {
            let err = r.resolve_checked(host).await.unwrap_err();
            assert!(is_refused_address(err.as_ref()), "{host}");
        }
        let local = GuardedResolver::new(lookup, true);
        assert!(local.resolve_checked("loop.example").await.is_ok());
        assert!(local.resolve_checked("meta.example").await.is_err());
    }

    #[tokio::test]
    async fn reqwest_never_connects_to_a_refused_address() {
        // A listener on loopback that must never see a connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = delivery_client(GuardedResolver::new(
            table(&[("evil.example", "127.0.0.1")]),
            false,
        ))
        .unwrap();
        let err = client
            .post(format!("http://evil.example:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(is_refused_address(&err));
        assert!(listener.accept().is_err(), "nothing connected");
    }
}
