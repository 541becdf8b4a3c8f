//! The local stack: what the tests and `scripts/local-stack` run instead of AWS
//! and Meta.
//!
//! - [`template`]: creates the DynamoDB tables from `template.yaml` itself, so
//!   code and template cannot drift.
//! - [`meta`]: an emulated Meta (consent pages, OAuth and Graph endpoints) on
//!   loopback.
//! - [`apigw`]: API Gateway HTTP API (payload 2.0) events, as the functions
//!   receive them in AWS; [`cors`]: its CORS, from the template.
//! - [`stack`]: all of it wired together against moto.
//! - [`media_bucket`]: the uploads' bucket in moto's S3, as the template's.
//! - [`graph_proxy`]: the Graph proxy wired to the stack, KMS calls counted.
//! - [`runtime_api`]: a local Lambda Runtime API, to run a function's real
//!   runtime loop in-process; [`lambda_api`]: a local Lambda Invoke API that
//!   records asynchronous invocations and can refuse them.
//! - [`calls`], [`requests`]: AWS SDK calls counted (benchmarks), DynamoDB
//!   requests recorded as IAM sees them (the IAM test).
//! - [`outbound`]: the outbound webhooks' queue loop and a local receiver.

pub mod apigw;
pub mod calls;
pub mod cors;
pub mod graph_proxy;
pub mod jwt;
pub mod lambda_api;
pub mod media_bucket;
pub mod meta;
pub mod outbound;
pub mod publish;
pub mod requests;
pub mod runtime_api;
pub mod stack;
pub mod template;
