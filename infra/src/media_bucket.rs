//! The media bucket of uploads in the emulator, as the template's
//! `MediaBucket`: encrypted, no public access, objects gone after 7 days,
//! and `PUT`s from the frontend's origins (the demo page uploads straight
//! to it).

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, CorsConfiguration, CorsRule, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use aws_sdk_s3::Client;

fn check<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("the media bucket's {what}: {e}"))
}

/// Creates bucket `name`, allowing browser `PUT`s from `origins`.
pub async fn create(aws: &aws_config::SdkConfig, name: &str, origins: Vec<String>) {
    let s3 = Client::new(aws);
    check("creation", s3.create_bucket().bucket(name).send().await);
    encrypt(&s3, name).await;
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .block_public_policy(true)
        .ignore_public_acls(true)
        .restrict_public_buckets(true)
        .build();
    let blocked = s3
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(block)
        .send()
        .await;
    check("public access block", blocked);
    expire(&s3, name).await;
    allow_puts(&s3, name, origins).await;
}

async fn encrypt(s3: &Client, name: &str) {
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(check("encryption", by_default))
        .build();
    let sse = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build();
    let put = s3
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(check("encryption", sse))
        .send()
        .await;
    check("encryption", put);
}

async fn expire(s3: &Client, name: &str) {
    let rule = LifecycleRule::builder()
        .id("uploads-expire")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(7).build())
        .build();
    let lifecycle = BucketLifecycleConfiguration::builder()
        .rules(check("lifecycle", rule))
        .build();
    let put = s3
        .put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(check("lifecycle", lifecycle))
        .send()
        .await;
    check("lifecycle", put);
}

async fn allow_puts(s3: &Client, name: &str, origins: Vec<String>) {
    let rule = CorsRule::builder()
        .set_allowed_origins(Some(origins))
        .allowed_methods("PUT")
        .allowed_headers("content-type")
        .max_age_seconds(600)
        .build();
    let cors = CorsConfiguration::builder()
        .cors_rules(check("CORS", rule))
        .build();
    let put = s3
        .put_bucket_cors()
        .bucket(name)
        .cors_configuration(check("CORS", cors))
        .send()
        .await;
    check("CORS", put);
}
