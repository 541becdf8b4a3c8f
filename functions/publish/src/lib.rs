//! Publishing and scheduling posts (CONTRACT.md, "Publishing").

pub mod decide;
pub mod post;
pub mod validate;
