//! Who the emulated Meta knows: the apps' credentials and the people who
//! consent (an Instagram account; a Facebook person with Pages).

#[derive(Clone, Debug)]
pub struct MetaApps {
    pub instagram_app_id: String,
    pub instagram_app_secret: String,
    pub facebook_app_id: String,
    pub facebook_app_secret: String,
}

impl Default for MetaApps {
    fn default() -> Self {
        Self {
            instagram_app_id: "990000000000001".into(),
            instagram_app_secret: "local-instagram-app-secret".into(),
            facebook_app_id: "880000000000001".into(),
            facebook_app_secret: "local-facebook-app-secret".into(),
        }
    }
}

/// The person approving at the Instagram consent page.
#[derive(Clone, Debug)]
pub struct IgPerson {
    /// App-scoped id (the exchange's `user_id`; deauthorize carries it).
    pub app_scoped_id: String,
    /// The professional account id (`/me` `user_id`; webhook `entry[].id`).
    pub account_id: String,
    pub username: String,
}

#[derive(Clone, Debug)]
pub struct FbPage {
    pub id: String,
    pub name: String,
    /// The linked Instagram professional account: (id, username).
    pub instagram: Option<(String, String)>,
}

/// The person approving at the Facebook consent page.
#[derive(Clone, Debug)]
pub struct FbPerson {
    pub id: String,
    pub name: String,
    pub pages: Vec<FbPage>,
}

impl Default for IgPerson {
    fn default() -> Self {
        Self {
            app_scoped_id: "26000000000000001".into(),
            account_id: "17841400000000001".into(),
            username: "acme.studio".into(),
        }
    }
}

impl FbPerson {
    /// `name` (app-scoped id `id`), administering `pages`.
    pub fn new(id: &str, name: &str, pages: Vec<FbPage>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            pages,
        }
    }
}

impl FbPerson {
    /// The default person, administering just `page`.
    pub fn with_page(page: FbPage) -> Self {
        Self {
            pages: vec![page],
            ..Self::default()
        }
    }
}

impl FbPage {
    /// A Page linked to the Instagram professional account `account_id`.
    pub fn linked(id: &str, name: &str, account_id: &str, username: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            instagram: Some((account_id.into(), username.into())),
        }
    }

    /// A Page with no Instagram account.
    pub fn unlinked(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            instagram: None,
        }
    }
}

impl Default for FbPerson {
    fn default() -> Self {
        Self {
            id: "10160000000000001".into(),
            name: "Ada Example".into(),
            pages: vec![
                FbPage {
                    id: "110000000000001".into(),
                    name: "Acme Studio".into(),
                    instagram: Some(("17841400000000002".into(), "acme.shop".into())),
                },
                FbPage {
                    id: "110000000000002".into(),
                    name: "Acme Blog (no Instagram)".into(),
                    instagram: None,
                },
            ],
        }
    }
}
