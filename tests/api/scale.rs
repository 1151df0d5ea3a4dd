//! What keeps Strata fast at scale keeps tenants apart: a query's shared
//! transaction, the warm schema pool, connections recycled by tenant count,
//! tenant lanes.

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use futures::FutureExt as _;
use serde_json::{Value, json};
use strata::tenancy::conn::TenantTx;
use strata::tenancy::schema_pool;
use strata::tenancy::template::{TEMPLATE, latest_version};

use crate::common::{TestApp, code, count};

const DASHBOARD: &str = "{ projects(first: 10) { totalCount edges { node { name \
    tasks(first: 20) { edges { node { title assignee { displayName } } } } } } } }";

/// How many warm-pool schemas exist.
const POOL_SCHEMAS: &str = "SELECT count(*) AS n FROM pg_namespace WHERE nspname LIKE 'pool\\_%'";

/// Whether the pool's (only) connection is clean: no tenant path, its own
/// role, no transaction open.
async fn pool_connection_is_clean(app: &TestApp) -> bool {
    let conn = app.app.pool.get().await.unwrap();
    is_clean(conn).await
}

/// The same for the connection of `slug`'s lane (the only lane).
async fn lane_connection_is_clean(app: &TestApp, slug: &str) -> bool {
    let conn = app.app.pool.get_for(slug).await.unwrap();
    is_clean(conn).await
}

async fn is_clean(mut conn: strata::db::PooledConn<'_>) -> bool {
    let clean = count(
        &mut conn,
        "SELECT count(*) AS n WHERE current_setting('search_path') NOT LIKE '%tenant_%' \
         AND current_user = session_user",
    )
    .await;
    // SAVEPOINT succeeds only inside a transaction block.
    clean == 1 && conn.batch_execute("SAVEPOINT probe").await.is_err()
}

#[tokio::test]
async fn a_query_runs_on_one_connection_and_sees_only_its_tenant() {
    // One connection for the whole server: a query's reads (the credential
    // check, projects, tasks, assignees, counts) share it.
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    let pa = app.create_project(&a, "alpha-1").await;
    app.create_project(&b, "beta-1").await;
    app.create_task(&a, json!({ "projectId": pa, "title": "alpha task" }))
        .await;
    // Interleaved, concurrently, on the one connection.
    let bodies = interleaved_dashboards(&app, &a, &b, 6).await;
    let alpha_tasks = &bodies[0]["data"]["projects"]["edges"][0]["node"]["tasks"]["edges"];
    assert_eq!(alpha_tasks[0]["node"]["title"], "alpha task");
    let beta_tasks = &bodies[1]["data"]["projects"]["edges"][0]["node"]["tasks"]["edges"];
    assert_eq!(beta_tasks.as_array().unwrap().len(), 0, "{}", bodies[1]);
    assert!(pool_connection_is_clean(&app).await);
}

#[tokio::test]
async fn one_lane_serving_two_tenants_keeps_them_apart() {
    // One lane and a pool of one: alpha's and beta's reads share the lane's
    // connection, spilling to the pool's when it is busy.
    let app = TestApp::builder().pool_size(1).lanes(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&a, "alpha-1").await;
    app.create_project(&b, "beta-1").await;
    interleaved_dashboards(&app, &a, &b, 8).await;
    assert!(lane_connection_is_clean(&app, "alpha").await);
    assert!(pool_connection_is_clean(&app).await);
}

/// `n` dashboards at once, alternating alpha's token `a` and beta's `b`:
/// each sees only its own tenant's one project. Returns the bodies.
async fn interleaved_dashboards(app: &TestApp, a: &str, b: &str, n: usize) -> Vec<Value> {
    let runs = (0..n).map(|i| {
        let (token, name) = if i % 2 == 0 {
            (a, "alpha-1")
        } else {
            (b, "beta-1")
        };
        async move {
            let body = app.gql().token(token).send(DASHBOARD, json!({})).await;
            assert!(body["errors"].is_null(), "{body}");
            let projects = body["data"]["projects"]["edges"].as_array().unwrap();
            assert_eq!(projects.len(), 1, "{body}");
            assert_eq!(projects[0]["node"]["name"], name, "{body}");
            body
        }
    });
    futures::future::join_all(runs).await
}

#[tokio::test]
async fn a_busy_lane_spills_to_the_pool() {
    let app = TestApp::builder().pool_size(1).lanes(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    app.create_project(&a, "alpha-1").await;
    // Its lane's connection is taken (as by a request waiting on a lock):
    // the request queues for it no longer than the lane wait, then is
    // served from the pool.
    let spills = app.app.query_stats.spills();
    let held = app.app.pool.get_for("alpha").await.unwrap();
    assert_eq!(app.app.query_stats.spills(), spills, "the lane was idle");
    let waits = app.app.query_stats.lane_waits();
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        app.gql().token(&a).send(DASHBOARD, json!({})),
    )
    .await
    .expect("served without waiting for the lane to come free");
    assert!(body["errors"].is_null(), "{body}");
    assert!(app.app.query_stats.spills() > spills);
    assert!(app.app.query_stats.lane_waits() > waits, "it queued first");
    drop(held);
    // Free again: served on the lane, no spill.
    let spills = app.app.query_stats.spills();
    let body = app.gql().token(&a).send(DASHBOARD, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(app.app.query_stats.spills(), spills);
}

#[tokio::test]
async fn a_request_queues_for_its_busy_lane_and_is_served_there() {
    let (app, a) = queueing_app(1).await;
    app.create_project(&a, "alpha-1").await;
    let stats = &app.app.query_stats;
    let (spills, waits) = (stats.spills(), stats.lane_waits());
    let held = app.app.pool.get_for("alpha").await.unwrap();
    let dashboard = app.gql().token(&a).send(DASHBOARD, json!({}));
    let release = async move {
        until(|| stats.lane_waits() > waits).await;
        drop(held);
    };
    let (body, ()) = tokio::join!(dashboard, release);
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["projects"]["edges"][0]["node"]["name"], "alpha-1",
        "{body}"
    );
    assert_eq!(stats.lane_waits(), waits + 1);
    assert_eq!(stats.spills(), spills, "served on its lane, not the pool's");
}

#[tokio::test]
async fn a_lane_queues_one_request_and_a_cancelled_one_gives_its_place_back() {
    let (app, _) = queueing_app(1).await;
    let (pool, stats) = (&app.app.pool, &app.app.query_stats);
    let held = pool.get_for("alpha").await.unwrap();
    let (spills, waits) = (stats.spills(), stats.lane_waits());
    // One request queues for the lane...
    let first = queue_for_alpha(&app);
    assert_eq!(stats.lane_waits(), waits + 1);
    // ...and the next does not queue behind it: it is served from the
    // pool at once.
    let second = tokio::time::timeout(Duration::from_secs(5), pool.get_for("alpha"))
        .await
        .expect("not queued behind the first")
        .unwrap();
    assert_eq!(stats.spills(), spills + 1);
    assert_eq!(stats.lane_waits(), waits + 1);
    drop(second);
    // Cancelled, the first gives its place back: the next request queues,
    // and gets the lane when it comes free.
    drop(first);
    let third = queue_for_alpha(&app);
    assert_eq!(stats.lane_waits(), waits + 2);
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("handed the lane")
        .unwrap();
    assert_eq!(stats.spills(), spills + 1, "the third was not spilled");
}

#[tokio::test]
async fn a_request_queued_for_two_lanes_takes_the_first_free_and_gives_both_places_back() {
    let (app, _) = queueing_app(2).await;
    let (pool, stats) = (&app.app.pool, &app.app.query_stats);
    // With two lanes, both are alpha's: hold both.
    let first_lane = pool.get_for("alpha").await.unwrap();
    let second_lane = pool.get_for("alpha").await.unwrap();
    let (spills, waits) = (stats.spills(), stats.lane_waits());
    let queued = queue_for_alpha(&app);
    assert_eq!(stats.lane_waits(), waits + 1);
    // Either lane coming free serves it: here the second.
    drop(second_lane);
    let served = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("handed the lane that came free")
        .unwrap();
    // Both places were given back: the next request queues (for either
    // lane) rather than spilling.
    let next = queue_for_alpha(&app);
    assert_eq!(stats.lane_waits(), waits + 2);
    drop(first_lane);
    tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("handed the first lane")
        .unwrap();
    drop(served);
    assert_eq!(stats.spills(), spills, "nothing spilled");
}

/// A server with `lanes` lanes, a pool of one connection, and a lane wait
/// far longer than any test needs (so none races the clock); and tenant
/// alpha, with its owner's token.
async fn queueing_app(lanes: usize) -> (TestApp, String) {
    let app = TestApp::builder()
        .pool_size(1)
        .lanes(lanes)
        .lane_wait(Duration::from_secs(60))
        .spawn()
        .await;
    let token = app.tenant_with_owner("alpha", "enterprise").await;
    (app, token)
}

/// A request for a connection in alpha's schema, polled once: it must be
/// waiting (its lanes busy), not served.
fn queue_for_alpha(
    app: &TestApp,
) -> std::pin::Pin<
    Box<impl Future<Output = Result<strata::db::PooledConn<'_>, strata::db::PoolRunError>>>,
> {
    let mut request = Box::pin(app.app.pool.get_for("alpha"));
    assert!(
        (&mut request).now_or_never().is_none(),
        "served, not queued"
    );
    request
}

/// Returns once `done` holds (checked every 5 ms, for at most 10 s).
async fn until(done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out");
}

#[tokio::test]
async fn a_cancelled_query_on_a_lane_leaves_no_transaction_open() {
    let app = TestApp::builder().pool_size(1).lanes(1).spawn().await;
    // The lane's abandoned transaction was discarded with its connection:
    // beta, whose lane it also was, is served clean.
    abandon_a_query_then_serve_another_tenant(&app).await;
    assert!(lane_connection_is_clean(&app, "beta").await);
}

#[tokio::test]
async fn a_cancelled_query_leaves_no_transaction_open() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    // The abandoned transaction's connection was discarded, not reused:
    // beta is served on a clean connection.
    abandon_a_query_then_serve_another_tenant(&app).await;
    assert!(pool_connection_is_clean(&app).await);
}

/// Alpha's dashboard is abandoned while it waits on a lock (its projects
/// already read in the request's shared transaction); then beta's is served
/// and sees only beta's project.
async fn abandon_a_query_then_serve_another_tenant(app: &TestApp) {
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&a, "alpha-1").await;
    app.create_project(&b, "beta-1").await;
    let mut locker = app.db().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE tenant_alpha.tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let request = app.gql().token(&a).send(DASHBOARD, json!({}));
    assert!(
        tokio::time::timeout(Duration::from_millis(700), request)
            .await
            .is_err(),
        "the query should still be waiting on the lock"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    locker.batch_execute("COMMIT").await.unwrap();
    let beta = app.gql().token(&b).send(DASHBOARD, json!({})).await;
    assert!(beta["errors"].is_null(), "{beta}");
    assert_eq!(
        beta["data"]["projects"]["edges"][0]["node"]["name"],
        "beta-1"
    );
}

#[tokio::test]
async fn a_failed_read_rolls_back_and_leaves_the_connection_clean() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    app.create_project(&a, "alpha-1").await;
    // Make alpha's tasks unreadable for its role: the tasks read fails
    // inside the request's shared transaction, after projects were read.
    let mut db = app.db().await;
    let role = app.binding("alpha").await.role;
    db.batch_execute(&format!(
        "REVOKE SELECT ON tenant_alpha.tasks FROM \"{}\"",
        role.as_str()
    ))
    .await
    .unwrap();
    let body = app.gql().token(&a).send(DASHBOARD, json!({})).await;
    assert_eq!(code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert!(
        !body.to_string().contains("permission denied"),
        "SQL errors stay in the log: {body}"
    );
    assert!(pool_connection_is_clean(&app).await);
    // The next query on the same connection is served.
    let me = app
        .gql()
        .token(&a)
        .send("{ me { email } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["email"], "owner@alpha.test", "{me}");
}

#[tokio::test]
async fn create_tenant_takes_a_schema_from_the_warm_pool() {
    let app = TestApp::spawn().await;
    let made = schema_pool::fill(&app.app.pool, TEMPLATE, 2).await.unwrap();
    assert_eq!(made, 2);
    let version = latest_version(TEMPLATE);
    assert_eq!(schema_pool::ready(&app.app.pool, version).await.unwrap(), 2);
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    assert_eq!(schema_pool::ready(&app.app.pool, version).await.unwrap(), 0);
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, POOL_SCHEMAS).await,
        0,
        "both pool schemas were renamed"
    );
    // The tenants work end to end, and apart.
    app.create_project(&a, "alpha-1").await;
    let body = app.gql().token(&b).send(DASHBOARD, json!({})).await;
    assert_eq!(body["data"]["projects"]["totalCount"], 0, "{body}");
    // Each renamed role reaches its own schema and no other.
    let (ra, rb) = (app.binding("alpha").await, app.binding("beta").await);
    assert!(ra.role.as_str().starts_with("tenant_alpha_"), "{}", ra.role);
    let mut tx = TenantTx::begin(&app.app.pool, &ra).await.unwrap();
    let err = tx
        .conn()
        .batch_execute("SELECT count(*) FROM tenant_beta.projects")
        .await
        .expect_err("alpha's role reads beta");
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(tx);
    let rights = format!(
        "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'tenant_beta' \
         AND has_schema_privilege('{}', oid, 'USAGE')",
        rb.role.as_str()
    );
    assert_eq!(count(&mut db, &rights).await, 1);
    // The next one, with the pool empty, runs the template itself.
    app.tenant_with_owner("gamma", "free").await;
}

#[tokio::test]
async fn concurrent_creates_share_the_pool_without_waiting_or_doubling() {
    let app = TestApp::spawn().await;
    schema_pool::fill(&app.app.pool, TEMPLATE, 1).await.unwrap();
    let slugs = ["one", "two", "three"];
    let made =
        futures::future::join_all(slugs.iter().map(|s| app.create_tenant_raw(s, "free"))).await;
    for (slug, body) in slugs.iter().zip(&made) {
        assert!(body["errors"].is_null(), "{slug}: {body}");
    }
    let mut db = app.db().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(DISTINCT schema_name) AS n FROM management.tenants"
        )
        .await,
        3
    );
    for slug in slugs {
        let tables = count(
            &mut db,
            &format!("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'tenant_{slug}'"),
        )
        .await;
        assert_eq!(tables, 15, "{slug}");
    }
    // The same slug twice, with the pool refilled: one tenant, one CONFLICT,
    // and the loser's claimed pool entry goes back (its transaction rolled back).
    schema_pool::fill(&app.app.pool, TEMPLATE, 2).await.unwrap();
    let twice = futures::future::join_all([
        app.create_tenant_raw("same", "free"),
        app.create_tenant_raw("same", "free"),
    ])
    .await;
    let codes: Vec<&str> = twice.iter().map(code).collect();
    assert!(codes.contains(&"CONFLICT"), "{twice:?}");
    assert_eq!(
        schema_pool::ready(&app.app.pool, latest_version(TEMPLATE))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn fill_replaces_entries_made_at_another_template_version() {
    let app = TestApp::spawn().await;
    schema_pool::fill(&app.app.pool, TEMPLATE, 2).await.unwrap();
    let mut db = app.db().await;
    db.batch_execute("UPDATE management.schema_pool SET template_version = template_version - 1")
        .await
        .unwrap();
    let version = latest_version(TEMPLATE);
    assert_eq!(schema_pool::ready(&app.app.pool, version).await.unwrap(), 0);
    // A stale entry is never claimed: this tenant runs the template itself.
    app.tenant_with_owner("alpha", "free").await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.schema_pool").await,
        2
    );
    assert_eq!(
        schema_pool::fill(&app.app.pool, TEMPLATE, 1).await.unwrap(),
        1
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.schema_pool").await,
        1
    );
    assert_eq!(
        count(&mut db, POOL_SCHEMAS).await,
        1,
        "the stale schemas are gone"
    );
    // A stale entry whose schema and role an operator already dropped by
    // hand goes too, instead of failing every fill from then on.
    db.batch_execute(
        "INSERT INTO management.schema_pool (schema_name, db_role, template_version) \
         VALUES ('pool_00000000abcd', 'pool_00000000abcd', 0)",
    )
    .await
    .unwrap();
    assert_eq!(
        schema_pool::fill(&app.app.pool, TEMPLATE, 1).await.unwrap(),
        0
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.schema_pool").await,
        1
    );
}

#[tokio::test]
async fn fill_keeps_the_entries_of_a_newer_template_for_the_servers_running_it() {
    let app = TestApp::spawn().await;
    schema_pool::fill(&app.app.pool, TEMPLATE, 2).await.unwrap();
    let mut db = app.db().await;
    // A rolling deploy: a newer server made these; this (older) server
    // neither claims nor drops them.
    db.batch_execute("UPDATE management.schema_pool SET template_version = template_version + 1")
        .await
        .unwrap();
    let version = latest_version(TEMPLATE);
    assert_eq!(
        schema_pool::fill(&app.app.pool, TEMPLATE, 1).await.unwrap(),
        1
    );
    assert_eq!(schema_pool::ready(&app.app.pool, version).await.unwrap(), 1);
    assert_eq!(
        schema_pool::ready(&app.app.pool, version + 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(count(&mut db, POOL_SCHEMAS).await, 3);
}

static FAILING_TEMPLATE: &[strata::tenancy::template::TemplateStep] =
    &[strata::tenancy::template::TemplateStep {
        version: 1,
        name: "0001_fails",
        sql: "CREATE TABLE t (x int); SELECT no_such_function();",
    }];

#[tokio::test]
async fn a_pool_entry_that_fails_leaves_nothing_behind_and_its_connection_clean() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let err = schema_pool::fill(&app.app.pool, FAILING_TEMPLATE, 1)
        .await
        .expect_err("the template fails");
    assert_eq!(err.code(), "INTERNAL_SERVER_ERROR");
    assert!(pool_connection_is_clean(&app).await);
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.schema_pool").await,
        0
    );
    assert_eq!(count(&mut db, POOL_SCHEMAS).await, 0);
    // The pool's one connection goes on serving.
    let owner = app.tenant_with_owner("after", "free").await;
    app.create_project(&owner, "fine").await;
}

#[tokio::test]
async fn connections_are_recycled_after_serving_their_share_of_tenants() {
    let app = TestApp::spawn().await;
    for slug in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        app.create_tenant_raw(slug, "free").await;
    }
    let (pool, stats) = strata::db::build_pool_with(
        &app.url,
        strata::db::PoolOptions {
            max_size: 1,
            tenants_per_connection: 2,
            lanes: 0,
            lane_wait: strata::db::LANE_WAIT,
        },
    );
    let pid = || async {
        let mut conn = pool.get().await.unwrap();
        count(&mut conn, "SELECT pg_backend_pid()::bigint AS n").await
    };
    let first = pid().await;
    // The same tenant again and again counts once.
    for _ in 0..3 {
        let tx = TenantTx::begin(&pool, &app.binding("alpha").await)
            .await
            .unwrap();
        tx.finish(Ok(())).await.unwrap();
    }
    assert_eq!(pid().await, first);
    assert_eq!(stats.recycled(), 0);
    // A second tenant reaches the limit: the connection is closed when
    // it comes back, and the next request gets a fresh one.
    let tx = TenantTx::begin(&pool, &app.binding("beta").await)
        .await
        .unwrap();
    tx.finish(Ok(())).await.unwrap();
    assert_eq!(stats.recycled(), 1);
    let second = pid().await;
    assert_ne!(second, first);
    for slug in ["gamma", "delta", "epsilon"] {
        let bind = app.binding(slug).await;
        let mut tx = TenantTx::begin(&pool, &bind).await.unwrap();
        let n = count(tx.conn(), "SELECT count(*) AS n FROM projects").await;
        assert_eq!(n, 0);
        tx.finish(Ok(())).await.unwrap();
    }
    assert_eq!(stats.recycled(), 2);
}

#[tokio::test]
async fn the_one_prepared_credential_check_answers_for_each_tenant_on_its_own() {
    // One connection: the credential check of every query is one prepared
    // statement there, re-run for whichever tenant the request binds.
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    let viewer = app.member(&b, "beta", "vera", "viewer").await;
    let mine = |token: String| {
        let app = &app;
        async move {
            let body = app
                .gql()
                .token(&token)
                .send("{ myPermissions }", json!({}))
                .await;
            (
                code(&body).to_owned(),
                body["data"]["myPermissions"].clone(),
            )
        }
    };
    let all = mine(a.clone()).await.1;
    assert!(all.as_array().unwrap().len() > 3, "{all}");
    for _ in 0..3 {
        let (ran, vera) = futures::join!(mine(a.clone()), mine(viewer.token.clone()));
        assert_eq!(ran.1, all, "alpha's owner keeps every permission");
        assert_eq!(
            vera.1,
            json!(["members:read", "projects:read", "tasks:read"]),
            "beta's viewer gets beta's viewer role, not what alpha's owner had"
        );
    }
    // Beta's viewer signs out; the same statement, just run for alpha,
    // refuses the ended session at once.
    let out = app
        .gql()
        .token(&viewer.token)
        .send("mutation { logout { session { id } } }", json!({}))
        .await;
    assert!(out["errors"].is_null(), "{out}");
    assert_eq!(mine(a.clone()).await.1, all);
    assert_eq!(mine(viewer.token.clone()).await.0, "UNAUTHENTICATED");
    assert!(pool_connection_is_clean(&app).await);
    // Prepared once on the connection for both tenants, not once per tenant.
    let mut conn = app.app.pool.get().await.unwrap();
    let prepared = count(
        &mut conn,
        "SELECT count(*) AS n FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH RECURSIVE granted%'",
    )
    .await;
    assert_eq!(prepared, 1);
}
