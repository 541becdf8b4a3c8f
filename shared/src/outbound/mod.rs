//! Outbound webhooks: every event delivered to the product's HTTPS
//! endpoints, signed per Standard Webhooks, retried for 72 hours.
//! The decisions live here as plain functions; `functions/admin` and
//! `functions/deliver` are the handlers around them.

pub mod attempt;
pub mod config;
pub mod endpoint;
pub mod filter;
pub mod health;
pub mod lane;
pub mod replay;
pub mod resolver;
pub mod schedule;
pub mod signature;
pub mod store;
pub mod target;
