//! Metrics per outcome, as CloudWatch Embedded Metric Format (EMF) log lines:
//! CloudWatch turns each line into metrics, with no API call from the
//! function. One namespace; dimensions are the function and the provider,
//! never a user or an account (their cardinality would make every metric a
//! new series, and they are personal data).
//!
//! A small module rather than a crate: the EMF document is a dozen lines of
//! JSON, and the crates that exist (`metrics_cloudwatch_embedded` and the
//! like) bring the `metrics` facade, a global recorder and a flush per
//! invocation that these handlers don't need.

use std::io::Write;

use serde_json::{json, Map, Value};

/// Every metric of the service lives here.
pub const NAMESPACE: &str = "IgConnect";

/// One EMF document: a few counts (or durations) under one set of
/// dimensions, written as one log line.
#[derive(Clone, Debug)]
pub struct Metrics {
    function: &'static str,
    provider: Option<&'static str>,
    values: Vec<(&'static str, Unit, f64)>,
}

/// The EMF units this service uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

impl Metrics {
    /// Metrics of `function` (`webhook`, `refresh`, `graph`, ...).
    pub fn new(function: &'static str) -> Self {
        Self {
            function,
            provider: None,
            values: Vec::new(),
        }
    }

    /// Adds the `provider` dimension.
    pub fn provider(mut self, provider: &'static str) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Adds `n` to the count `name` (names are CamelCase, fixed strings).
    pub fn count(mut self, name: &'static str, n: u64) -> Self {
        match self.values.iter_mut().find(|(k, _, _)| *k == name) {
            Some((_, _, v)) => *v += n as f64,
            None => self.values.push((name, Unit::Count, n as f64)),
        }
        self
    }

    /// Records a duration in milliseconds.
    pub fn millis(mut self, name: &'static str, ms: f64) -> Self {
        self.values.push((name, Unit::Milliseconds, ms));
        self
    }

    /// The EMF document at `timestamp_ms` (milliseconds since the epoch).
    pub fn document(&self, timestamp_ms: i64) -> Value {
        // Per function (what alarms watch), and per function and provider.
        let mut dims = vec![vec!["function"]];
        if self.provider.is_some() {
            dims.push(vec!["function", "provider"]);
        }
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dims,
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert("function".into(), json!(self.function));
        if let Some(p) = self.provider {
            root.insert("provider".into(), json!(p));
        }
        for (name, _, value) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the document as one line to `out` (nothing when empty).
    pub fn write_to(&self, out: &mut impl Write, timestamp_ms: i64) {
        if self.values.is_empty() {
            return;
        }
        let line = self.document(timestamp_ms).to_string();
        let _ = writeln!(out, "{line}");
    }

    /// Writes the document to stdout, where Lambda sends it to CloudWatch
    /// (or to the [`Capture`] this thread holds: a test's own sink).
    pub fn emit(&self) {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let captured = CAPTURED.with_borrow_mut(|captured| match captured.as_mut() {
            Some(lines) => {
                self.write_to(lines, now_ms as i64);
                true
            }
            None => false,
        });
        if !captured {
            self.write_to(&mut std::io::stdout().lock(), now_ms as i64);
        }
    }
}

std::thread_local! {
    /// Where this thread's documents go while a [`Capture`] is held (tests).
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

#[cfg(any(test, feature = "testing"))]
/// Collects every document emitted on this thread from its start until it is
/// dropped, instead of printing it: tests parse what CloudWatch would read.
/// A test on a current-thread runtime (`#[tokio::test]`) runs its handlers,
/// their spawned tasks and local runtimes on its own thread, so the sink is
/// the test's own: other tests running at the same time never add to it,
/// and totals are exact.
pub struct Capture(std::marker::PhantomData<*const ()>);

#[cfg(any(test, feature = "testing"))]
impl Capture {
    pub fn start() -> Self {
        CAPTURED.set(Some(Vec::new()));
        Capture(std::marker::PhantomData)
    }

    /// Every document emitted so far, parsed.
    pub fn documents(&self) -> Vec<Value> {
        let text = CAPTURED.with_borrow(|c| {
            String::from_utf8_lossy(c.as_deref().unwrap_or_default()).into_owned()
        });
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one EMF document per line"))
            .collect()
    }

    /// The sum of metric `name` over the documents of `function` emitted so
    /// far.
    pub fn total(&self, function: &str, name: &str) -> f64 {
        self.documents()
            .iter()
            .filter(|d| d["function"] == function)
            .filter_map(|d| d[name].as_f64())
            .sum()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURED.set(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a document against the EMF specification's rules: `_aws` with
    /// a millisecond `Timestamp` and `CloudWatchMetrics` directives; each
    /// directive a `Namespace` (1–255 characters), `Dimensions` (sets of at
    /// most 30 names, each a string member of the root) and `Metrics` (at
    /// most 100, each `Name` a numeric member of the root, `Unit` a valid
    /// unit).
    fn assert_valid_emf(doc: &Value) {
        const UNITS: [&str; 2] = ["Count", "Milliseconds"];
        let aws = doc.get("_aws").expect("_aws");
        assert!(aws["Timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_000_000_000_000));
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for d in directives {
            let ns = d["Namespace"].as_str().expect("namespace");
            assert!((1..=255).contains(&ns.len()));
            for set in d["Dimensions"].as_array().expect("dimensions") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("a dimension name");
                    assert!(doc[name].is_string(), "dimension {name} is a string member");
                }
            }
            let metrics = d["Metrics"].as_array().expect("metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().expect("a metric name");
                assert!(doc[name].is_number(), "metric {name} is a number member");
                if let Some(u) = m.get("Unit") {
                    assert!(UNITS.contains(&u.as_str().unwrap()));
                }
            }
        }
    }

    #[test]
    fn a_document_follows_the_emf_specification() {
        let m = Metrics::new("webhook")
            .provider("instagram")
            .count("DeliveriesStored", 1)
            .count("UpdatesPerDelivery", 3)
            .count("UpdatesPerDelivery", 2)
            .millis("MetaLatency", 101.5);
        let doc = m.document(1_795_262_400_000);
        assert_valid_emf(&doc);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"], ["function", "provider"]])
        );
        assert_eq!(doc["UpdatesPerDelivery"], 5.0);
        assert_eq!(doc["MetaLatency"], 101.5);
        assert_eq!(doc["function"], "webhook");
    }

    #[test]
    fn one_line_and_nothing_for_nothing() {
        let mut out = Vec::new();
        Metrics::new("refresh").write_to(&mut out, 1);
        assert!(out.is_empty());
        Metrics::new("refresh")
            .count("Refreshed", 2)
            .write_to(&mut out, 1_795_262_400_000);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let doc: Value = serde_json::from_str(text.trim()).unwrap();
        assert_valid_emf(&doc);
        // Without a provider there is no provider dimension.
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"]])
        );
    }
}
