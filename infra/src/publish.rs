//! The publish function wired to the local stack (either door), its KMS
//! calls counted.

use aws_sdk_kms::config::Builder as KmsConfig;
use publish::{Door, PublishConfig, Publisher};
use shared::vault::KmsDataKeys;
use shared::{Clock, FromEnv};

use crate::calls::Calls;
use crate::stack::Stack;

/// A warm container of one door's function (`PUBLISH_DOOR`).
pub fn publisher(stack: &Stack, clock: Clock, door: Door) -> (Publisher<KmsDataKeys>, Calls) {
    let mut config = PublishConfig::from_env(stack.env_reader()).expect("publish config");
    config.door = door;
    let kms_calls = Calls::default();
    let kms = aws_sdk_kms::Client::from_conf(
        KmsConfig::from(&stack.aws)
            .interceptor(kms_calls.clone())
            .build(),
    );
    let keys = KmsDataKeys::new(kms, &config.token_key_id);
    let publisher = Publisher::new(
        config,
        stack.dynamodb.clone(),
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        keys,
        clock,
        Some(publish::uploads::MediaBucket::new(
            &stack.aws,
            stack.var("MEDIA_BUCKET"),
        )),
    )
    .expect("an HTTPS client");
    (publisher, kms_calls)
}
