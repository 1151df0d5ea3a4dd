//! Tenant lookups stay cached while the change feed vouches for them, and a
//! change to a tenant is still seen within a second, feed or no feed.

use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use strata::tenancy::resolver::CACHE_TTL;

use crate::common::{TestApp, code};

const PROJECT_NAMES: &str = "{ projects(first: 10) { edges { node { name } } } }";

/// Waits until the server's change feed is listening and vouching.
async fn feed_vouching(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.app.tenants.vouched() {
        assert!(Instant::now() < deadline, "the change feed never vouched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Statements the pool's connections sent for one request of `token`'s.
async fn statements_for(app: &TestApp, token: &str) -> u64 {
    let before = app.app.query_stats.statements();
    let body = app.gql().token(token).send(PROJECT_NAMES, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    app.app.query_stats.statements() - before
}

/// [`statements_for`] with the feed vouching throughout: on a loaded
/// machine a ping can come back late, and the request then rightly reads
/// its tenant again; such a request is measured again.
async fn statements_while_vouched(app: &TestApp, token: &str) -> u64 {
    for _ in 0..5 {
        feed_vouching(app).await;
        let n = statements_for(app, token).await;
        if app.app.tenants.vouched() {
            return n;
        }
    }
    panic!("the change feed kept lapsing");
}

#[tokio::test]
async fn a_tenant_is_not_read_again_while_the_feed_vouches_for_it() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("alpha", "free").await;
    feed_vouching(&app).await;
    statements_for(&app, &t).await;
    let cached = statements_while_vouched(&app, &t).await;
    // Past the TTL, the entry is served on the feed's word: no lookup.
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
    assert_eq!(statements_while_vouched(&app, &t).await, cached);
}

#[tokio::test]
async fn a_suspension_evicts_a_vouched_entry() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("alpha", "free").await;
    let other = app.tenant_with_owner("beta", "free").await;
    feed_vouching(&app).await;
    statements_for(&app, &t).await;
    statements_for(&app, &other).await;
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
    // Both entries are now older than the TTL: only the feed keeps them.
    let mut db = app.db().await;
    db.batch_execute("UPDATE management.tenants SET status = 'suspended' WHERE slug = 'alpha'")
        .await
        .unwrap();
    let deadline = Instant::now() + CACHE_TTL;
    loop {
        let body = app.gql().token(&t).send(PROJECT_NAMES, json!({})).await;
        if code(&body) == "TENANT_SUSPENDED" {
            break;
        }
        assert!(Instant::now() < deadline, "still served: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only alpha's entry went: beta is still served without a lookup.
    let cached = statements_while_vouched(&app, &other).await;
    assert_eq!(statements_while_vouched(&app, &other).await, cached);
}

#[tokio::test]
async fn a_change_is_seen_within_the_ttl_when_the_feed_connection_dies() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("alpha", "free").await;
    feed_vouching(&app).await;
    statements_for(&app, &t).await;
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
    // The feed's connection dies as the suspension commits: whether or not
    // its announcement arrives, the suspension is seen within the TTL.
    let mut db = app.db().await;
    db.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'strata_changes' AND datname = current_database(); \
         UPDATE management.tenants SET status = 'suspended' WHERE slug = 'alpha'",
    )
    .await
    .unwrap();
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(100)).await;
    let refused = app.gql().token(&t).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(code(&refused), "TENANT_SUSPENDED");
    // The feed comes back and vouches again.
    feed_vouching(&app).await;
}

#[tokio::test]
async fn a_custom_domain_added_later_is_heard() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    let beta = app.tenant_with_owner("beta", "free").await;
    feed_vouching(&app).await;
    let from_the_domain = || {
        app.gql()
            .token(&beta)
            .header("host", "app.alpha.example")
            .send(PROJECT_NAMES, json!({}))
    };
    // Nobody has the domain yet: the miss is cached, and beta is served.
    let body = from_the_domain().await;
    assert!(body["errors"].is_null(), "{body}");
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(200)).await;
    let mut db = app.db().await;
    db.batch_execute(
        "INSERT INTO management.tenant_domains (id, tenant_id, domain) \
         SELECT gen_random_uuid(), id, 'app.alpha.example' FROM management.tenants \
         WHERE slug = 'alpha'",
    )
    .await
    .unwrap();
    // The cached miss is past its TTL and vouched for: only the feed's
    // announcement of the new domain evicts it. Then the domain names alpha
    // and beta's token beta.
    let deadline = Instant::now() + CACHE_TTL;
    loop {
        let body = from_the_domain().await;
        if code(&body) == "TENANT_MISMATCH" {
            break;
        }
        assert!(Instant::now() < deadline, "domain still unknown: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_feed_whose_trigger_is_off_vouches_for_nothing() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("alpha", "free").await;
    statements_for(&app, &t).await;
    // A change made with the trigger off is never announced: the feed
    // stops vouching, so the entry lives out its TTL only.
    let mut db = app.db().await;
    db.batch_execute(
        "ALTER TABLE management.tenants DISABLE TRIGGER tenants_announce_change; \
         UPDATE management.tenants SET status = 'suspended' WHERE slug = 'alpha'",
    )
    .await
    .unwrap();
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(100)).await;
    assert!(!app.app.tenants.vouched());
    let refused = app.gql().token(&t).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(code(&refused), "TENANT_SUSPENDED");
}
