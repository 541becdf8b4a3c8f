//! Counts AWS SDK calls per operation (for the benchmarks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::Intercept;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Debug, Default, Clone)]
pub struct Calls(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The input's type names the operation: `PutItemInput { .. }`.
        let debug = format!("{:?}", context.input());
        let op = debug
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| w.ends_with("Input") && w.len() > 5)
            .map(|w| w.trim_end_matches("Input").to_string())
            .unwrap_or_else(|| "?".into());
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

impl Calls {
    /// A DynamoDB client on `aws` whose calls are counted here.
    pub fn dynamodb(&self, aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(aws).interceptor(self.clone());
        aws_sdk_dynamodb::Client::from_conf(conf.build())
    }

    /// A KMS client on `aws` whose calls are counted here.
    pub fn kms(&self, aws: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::config::Builder::from(aws).interceptor(self.clone());
        aws_sdk_kms::Client::from_conf(conf.build())
    }

    /// How often `operation` (e.g. `Decrypt`, `GetItem`) was called so far.
    pub fn count(&self, operation: &str) -> usize {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// The counts so far, and a fresh start.
    pub fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    /// `2 GetItem + 1 PutItem`, or per `per` units with one decimal.
    pub fn describe(counts: &BTreeMap<String, usize>, per: usize) -> String {
        counts
            .iter()
            .map(|(op, c)| {
                if per <= 1 {
                    format!("{c} {op}")
                } else {
                    format!("{:.2} {op}", *c as f64 / per as f64)
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }
}
