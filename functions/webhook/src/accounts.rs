//! Which accounts a data-deletion request covers.

use shared::store::DeletionAccount;

/// An account the person deleted within the retention (its tombstone), and
/// who holds the account now, if anyone.
#[derive(Clone, Debug)]
pub struct Gone {
    pub account: DeletionAccount,
    pub owner: Option<String>,
}

/// The accounts a request covers, each provider and account once: those of
/// the connections it revoked (or found revoked), then those the person
/// deleted within the retention, unless the account is held now by a
/// connection this request leaves alone (connected again since, by a newer
/// grant or by someone else): its events are that connection's now, the way
/// the revoke never undoes a newer grant.
pub fn covered(revoked: Vec<DeletionAccount>, gone: Vec<Gone>) -> Vec<DeletionAccount> {
    let ended: Vec<String> = revoked.iter().map(|a| a.account_id.clone()).collect();
    let deleted = gone
        .into_iter()
        .filter(|g| g.owner.is_none() || ended.contains(&g.account.account_id))
        .map(|g| g.account);
    let mut out: Vec<DeletionAccount> = Vec::new();
    for account in revoked.into_iter().chain(deleted) {
        let seen = out
            .iter()
            .any(|a| a.provider == account.provider && a.account_id == account.account_id);
        if !seen {
            out.push(account);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Provider;

    fn account(provider: Provider, id: &str) -> DeletionAccount {
        DeletionAccount {
            provider,
            account_id: id.into(),
            user_id: "u".into(),
        }
    }

    fn gone(provider: Provider, id: &str, owner: Option<&str>) -> Gone {
        Gone {
            account: account(provider, id),
            owner: owner.map(str::to_string),
        }
    }

    #[test]
    fn deleted_accounts_are_covered_unless_someone_else_holds_them_now() {
        let ig = Provider::Instagram;
        let fb = Provider::Facebook;
        let got = covered(
            vec![account(ig, "1"), account(ig, "1")],
            vec![
                // Deleted and held by nobody: covered.
                gone(ig, "2", None),
                // Deleted, and connected again since by a connection this
                // request does not end: left to it.
                gone(ig, "3", Some("other-user")),
                // Deleted through one provider, revoked through the other:
                // both providers' records are the person's.
                gone(fb, "1", Some("u")),
                // Twice: once.
                gone(ig, "2", None),
            ],
        );
        let ids: Vec<(Provider, &str)> = got
            .iter()
            .map(|a| (a.provider, a.account_id.as_str()))
            .collect();
        assert_eq!(ids, [(ig, "1"), (ig, "2"), (fb, "1")]);
        assert!(covered(vec![], vec![]).is_empty());
    }
}
