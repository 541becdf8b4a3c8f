//! What an event is about: the kinds docs/contract.md lists ("Events").
//! Meta's webhook fields are an open set (kept as Meta names them); every
//! other kind is the service's own, a closed set the compiler checks.

use crate::connection::Lifecycle;

/// A post's end (`post.published`, `post.failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    Published,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A webhook item: Meta's field (`messages`, `comments`, ...).
    Webhook(String),
    /// A connection's change (`connection.*`).
    Lifecycle(Lifecycle),
    /// Meta asked for an account's data to be deleted.
    DataDeletionRequested,
    /// A post published or failed (`post.*`).
    Post(PostOutcome),
    /// An outbound webhook endpoint disabled after 5 days of failures.
    EndpointDisabled,
}

impl EventKind {
    /// Every kind of the service's own (not Meta's fields).
    pub fn own() -> Vec<EventKind> {
        let mut all: Vec<EventKind> = Lifecycle::ALL
            .iter()
            .map(|l| EventKind::Lifecycle(*l))
            .collect();
        all.extend([
            EventKind::DataDeletionRequested,
            EventKind::Post(PostOutcome::Published),
            EventKind::Post(PostOutcome::Failed),
            EventKind::EndpointDisabled,
        ]);
        all
    }

    /// The event's `kind`, as docs/contract.md lists it.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Webhook(field) => field,
            EventKind::Lifecycle(l) => l.kind(),
            EventKind::DataDeletionRequested => "data_deletion.requested",
            EventKind::Post(PostOutcome::Published) => "post.published",
            EventKind::Post(PostOutcome::Failed) => "post.failed",
            EventKind::EndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    /// A stored or received kind: one of the service's own, or else Meta's
    /// field.
    pub fn parse(kind: &str) -> Self {
        let own = EventKind::own().into_iter().find(|k| k.as_str() == kind);
        own.unwrap_or_else(|| EventKind::Webhook(kind.to_string()))
    }

    /// Whether the service writes this kind itself (every kind but Meta's
    /// fields; `own` lists it).
    pub fn is_own(&self) -> bool {
        // Exhaustive: a new kind must say which it is.
        match self {
            EventKind::Webhook(_) => false,
            EventKind::Lifecycle(_)
            | EventKind::DataDeletionRequested
            | EventKind::Post(_)
            | EventKind::EndpointDisabled => true,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_own_kind_is_in_the_event_contract_once_and_parses_back() {
        let contract = include_str!("../../docs/contract.md");
        let own = EventKind::own();
        for kind in &own {
            assert!(kind.is_own(), "{kind}");
            assert!(contract.contains(&format!("`{kind}`")), "{kind}");
            assert_eq!(&EventKind::parse(kind.as_str()), kind);
        }
        let distinct: std::collections::HashSet<&str> = own.iter().map(EventKind::as_str).collect();
        assert_eq!(distinct.len(), own.len());
    }

    #[test]
    fn anything_else_is_metas_field_as_meta_names_it() {
        for field in ["messages", "comments", "message_edit", "standby"] {
            let kind = EventKind::parse(field);
            assert_eq!(kind, EventKind::Webhook(field.into()));
            assert!(!kind.is_own());
            assert_eq!(kind.as_str(), field);
        }
    }
}
