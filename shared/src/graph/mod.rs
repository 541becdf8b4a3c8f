//! The Graph proxy's decisions and state: what may be called
//! ([`policy`]), when Meta's limits stop calls for an account or the app
//! ([`ratelimit`]), how often a user or a connection may call
//! ([`buckets`]), what of Meta's answer may leave ([`scrub`]), opened
//! tokens kept warm ([`token_cache`]), and the proxy's DynamoDB records
//! ([`store`]; erased per account for data deletion by [`erase`]). The
//! function `graph` wires them.

pub mod buckets;
pub mod erase;
pub mod policy;
pub mod ratelimit;
pub mod scrub;
pub mod store;
pub mod token_cache;
