//! What became of one `POST /webhook`, counted as CloudWatch metrics (EMF,
//! namespace `IgConnect`, dimension `function=webhook`). Every delivery
//! writes every outcome's count (0 or 1), so a dashboard shows zeros rather
//! than gaps and an alarm on any of them sees data every minute Meta sends.

use shared::metrics::Metrics;

/// The outcome of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every update is stored: `new` events written, `duplicates` already
    /// there (Meta's retries). `200`.
    Stored { new: usize, duplicates: usize },
    /// Over 2 MiB: `413`.
    Oversized,
    /// Missing, malformed or wrong signature: `401`, nothing stored.
    BadSignature,
    /// Signed, but not Meta's shape: `400`, nothing stored.
    Malformed,
    /// The owner lookup or an event write failed: `503`, Meta retries.
    StoreFailed,
    /// The app secrets could not be read: `503`, Meta retries.
    SecretsUnavailable,
}

/// The outcome counts, in the order they are written.
pub const OUTCOMES: [&str; 6] = [
    "Stored",
    "Oversized",
    "BadSignature",
    "Malformed",
    "StoreFailed",
    "SecretsUnavailable",
];

impl Delivery {
    /// The name of this outcome's count.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Stored { .. } => "Stored",
            Self::Oversized => "Oversized",
            Self::BadSignature => "BadSignature",
            Self::Malformed => "Malformed",
            Self::StoreFailed => "StoreFailed",
            Self::SecretsUnavailable => "SecretsUnavailable",
        }
    }

    /// Whether Meta was told to retry (a `5xx`).
    pub fn is_retry(self) -> bool {
        matches!(self, Self::StoreFailed | Self::SecretsUnavailable)
    }

    /// The delivery's metrics: `Deliveries` 1, each outcome 0 or 1,
    /// `Retried` (any `5xx`), and for a stored one `Updates` (its average is
    /// updates per delivery), `NewEvents` and `Duplicates`.
    pub fn metrics(self) -> Metrics {
        let mut m = Metrics::new("webhook").count("Deliveries", 1);
        for name in OUTCOMES {
            m = m.count(name, u64::from(name == self.outcome()));
        }
        m = m.count("Retried", u64::from(self.is_retry()));
        let (new, duplicates) = match self {
            Self::Stored { new, duplicates } => (new as u64, duplicates as u64),
            _ => (0, 0),
        };
        m.count("Updates", new + duplicates)
            .count("NewEvents", new)
            .count("Duplicates", duplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc(d: Delivery) -> Value {
        d.metrics().document(1_795_260_000_000)
    }

    #[test]
    fn each_delivery_counts_its_outcome_once_and_the_others_as_zero() {
        let all = [
            Delivery::Stored {
                new: 2,
                duplicates: 1,
            },
            Delivery::Oversized,
            Delivery::BadSignature,
            Delivery::Malformed,
            Delivery::StoreFailed,
            Delivery::SecretsUnavailable,
        ];
        for d in all {
            let doc = doc(d);
            assert_eq!(doc["function"], "webhook");
            assert_eq!(doc["Deliveries"], 1.0);
            for name in OUTCOMES {
                let want = if name == d.outcome() { 1.0 } else { 0.0 };
                assert_eq!(doc[name], want, "{d:?} {name}");
            }
            assert_eq!(doc["Retried"], if d.is_retry() { 1.0 } else { 0.0 });
            // Every value written is declared as a metric, and the reverse.
            let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap())
                .collect();
            for name in &declared {
                assert!(doc[*name].is_number(), "{name}");
            }
            assert_eq!(declared.len(), OUTCOMES.len() + 5);
        }
    }

    #[test]
    fn a_stored_delivery_counts_its_updates_new_and_repeated() {
        let doc = doc(Delivery::Stored {
            new: 997,
            duplicates: 3,
        });
        assert_eq!(doc["Updates"], 1000.0);
        assert_eq!(doc["NewEvents"], 997.0);
        assert_eq!(doc["Duplicates"], 3.0);
        let refused = super::tests::doc(Delivery::BadSignature);
        assert_eq!(refused["Updates"], 0.0);
    }

    #[test]
    fn only_failures_of_ours_ask_meta_to_retry() {
        assert!(Delivery::StoreFailed.is_retry());
        assert!(Delivery::SecretsUnavailable.is_retry());
        assert!(!Delivery::BadSignature.is_retry());
        assert!(!Delivery::Malformed.is_retry());
        assert!(!Delivery::Oversized.is_retry());
    }
}
