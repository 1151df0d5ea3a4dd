//! No tenant ever sees another tenant's rows.

use std::time::Duration;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;
use strata::tenancy::conn::TenantTx;

use crate::common::{TestApp, code, count};

const PROJECT_NAMES: &str = "{ projects(first: 100) { totalCount edges { node { name } } } }";

/// The search_path of the pool's (only) connection, and whether it is
/// still inside a transaction. Also checks it is back to its own role.
async fn pool_connection_state(app: &TestApp) -> (String, bool) {
    let mut conn = app.app.pool.get().await.unwrap();
    let path: Vec<PathRow> = diesel::sql_query(
        "SELECT current_setting('search_path') || CASE WHEN current_user = session_user \
         THEN '' ELSE ' (role still tenant_)' END AS path",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    // SAVEPOINT succeeds only inside a transaction block.
    let in_tx = conn.batch_execute("SAVEPOINT probe").await.is_ok();
    (path[0].path.clone(), in_tx)
}

#[tokio::test]
async fn one_connection_alternating_tenants_never_leaks_rows() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    for i in 0..3 {
        app.create_project(&a, &format!("alpha-{i}")).await;
    }
    for i in 0..5 {
        app.create_project(&b, &format!("beta-{i}")).await;
    }
    let requests = (0..80).map(|i| {
        let (slug, token) = if i % 2 == 0 {
            ("alpha", &a)
        } else {
            ("beta", &b)
        };
        let app = &app;
        async move {
            let body = app
                .gql()
                .tenant(slug)
                .token(token)
                .send(PROJECT_NAMES, json!({}))
                .await;
            (slug, body)
        }
    });
    for (slug, body) in futures::future::join_all(requests).await {
        let edges = body["data"]["projects"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"));
        let expected = if slug == "alpha" { 3 } else { 5 };
        assert_eq!(edges.len(), expected, "{slug}: {body}");
        for edge in edges {
            let name = edge["node"]["name"].as_str().unwrap();
            assert!(name.starts_with(slug), "{slug} saw {name}");
        }
        assert_eq!(body["data"]["projects"]["totalCount"], expected);
    }
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(
        !path.contains("tenant_"),
        "search_path outlived its transaction: {path}"
    );
    assert!(!in_tx);
}

#[tokio::test]
async fn token_from_one_tenant_is_refused_on_another() {
    let app = TestApp::spawn().await;
    let a = app.tenant_with_owner("alpha", "free").await;
    let b = app.tenant_with_owner("beta", "free").await;
    app.create_project(&b, "beta secret").await;
    // Alpha's token naming beta, by header and by subdomain.
    let by_header = app
        .gql()
        .tenant("beta")
        .token(&a)
        .send(PROJECT_NAMES, json!({}))
        .await;
    assert_eq!(code(&by_header), "TENANT_MISMATCH");
    assert!(by_header["data"].is_null());
    let by_host = app
        .gql()
        .header("host", "beta.strata.test")
        .token(&a)
        .send(PROJECT_NAMES, json!({}))
        .await;
    assert_eq!(code(&by_host), "TENANT_MISMATCH");
    // Mutations too: nothing is written to beta.
    let write = app
        .gql()
        .tenant("beta")
        .token(&a)
        .send(
            "mutation { createProject(input: {name: \"intruder\"}) { project { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&write), "TENANT_MISMATCH");
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_beta.projects").await,
        1
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_alpha.projects").await,
        0
    );
}

#[tokio::test]
async fn header_and_subdomain_naming_different_tenants_is_mismatch() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    app.tenant_with_owner("beta", "free").await;
    let body = app
        .gql()
        .tenant("alpha")
        .header("host", "beta.strata.test")
        .admin()
        .send(PROJECT_NAMES, json!({}))
        .await;
    assert_eq!(code(&body), "TENANT_MISMATCH");
}

#[tokio::test]
async fn subdomain_and_custom_domain_resolve_the_tenant() {
    let app = TestApp::spawn().await;
    let a = app.tenant_with_owner("alpha", "free").await;
    app.create_project(&a, "alpha-1").await;
    let by_host = app
        .gql()
        .header("host", "alpha.strata.test:443")
        .token(&a)
        .send(PROJECT_NAMES, json!({}))
        .await;
    assert_eq!(by_host["data"]["projects"]["totalCount"], 1, "{by_host}");

    let mut db = app.db().await;
    let tenant = strata::tenancy::tenants::find_by_slug(&mut db, "alpha")
        .await
        .unwrap()
        .unwrap();
    strata::tenancy::tenants::add_domain(&mut db, tenant.id, "Projects.Alpha.Example")
        .await
        .unwrap();
    let by_domain = app
        .gql()
        .header("host", "projects.alpha.example")
        .token(&a)
        .send(PROJECT_NAMES, json!({}))
        .await;
    assert_eq!(
        by_domain["data"]["projects"]["totalCount"], 1,
        "{by_domain}"
    );
    // The token alone names the tenant too.
    let by_token = app.gql().token(&a).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(by_token["data"]["projects"]["totalCount"], 1, "{by_token}");
}

#[tokio::test]
async fn unknown_or_missing_tenant_is_tenant_not_found() {
    let app = TestApp::spawn().await;
    for slug in ["nobody", "Robert'); DROP TABLE management.tenants;--"] {
        let body = app
            .gql()
            .tenant(slug)
            .admin()
            .send(PROJECT_NAMES, json!({}))
            .await;
        assert_eq!(code(&body), "TENANT_NOT_FOUND", "{slug}: {body}");
    }
    let login = app
        .gql()
        .send(
            "mutation { login(email: \"a@b.co\", password: \"x\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&login), "TENANT_NOT_FOUND");
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.plans").await,
        4
    );
}

#[tokio::test]
async fn suspended_tenant_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    let a = app.tenant_with_owner("alpha", "free").await;
    let ok = app.gql().token(&a).send(PROJECT_NAMES, json!({})).await;
    assert!(ok["errors"].is_null(), "{ok}");
    let mut db = app.db().await;
    db.batch_execute("UPDATE management.tenants SET status = 'suspended' WHERE slug = 'alpha'")
        .await
        .unwrap();
    tokio::time::sleep(strata::tenancy::resolver::CACHE_TTL + Duration::from_millis(100)).await;
    let refused = app.gql().token(&a).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(code(&refused), "TENANT_SUSPENDED");
    // The admin API still answers.
    let admin = app
        .gql()
        .admin()
        .send("{ tenant(slug: \"alpha\") { status } }", json!({}))
        .await;
    assert_eq!(admin["data"]["tenant"]["status"], "SUSPENDED");
}

#[tokio::test]
async fn failed_mutation_rolls_back_and_leaves_the_connection_clean() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "free").await;
    let b = app.tenant_with_owner("beta", "free").await;
    app.create_project(&b, "beta-1").await;
    // A foreign-key violation inside alpha's transaction.
    let body = app
        .gql()
        .token(&a)
        .send(
            "mutation { createTask(input: {projectId: \"00000000-0000-7000-8000-000000000000\", title: \"t\"}) { task { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    assert_eq!(body["errors"][0]["extensions"]["field"], "projectId");
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx);
    let beta = app.gql().token(&b).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(beta["data"]["projects"]["totalCount"], 1, "{beta}");
}

#[tokio::test]
async fn panic_inside_a_tenant_transaction_does_not_poison_the_pool() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    let pool = app.app.pool.clone();
    let bind = app.binding("alpha").await;
    let joined = tokio::spawn(async move {
        let mut tx = TenantTx::begin(&pool, &bind).await.unwrap();
        tx.conn()
            .batch_execute(
                "INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'half-done')",
            )
            .await
            .unwrap();
        panic!("resolver bug");
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx);
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_alpha.projects").await,
        0
    );
}

/// Sends `query` with `token` while `table` is locked, gives up on it as
/// a client that disconnects would (it must still be waiting on the lock),
/// lets the server notice, then releases the lock.
async fn abandon_behind_lock(app: &TestApp, table: &str, token: &str, query: &str) {
    let mut locker = app.db().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    let request = app.gql().token(token).send(query, json!({}));
    assert!(
        tokio::time::timeout(Duration::from_millis(700), request)
            .await
            .is_err(),
        "the request should still be waiting on the lock"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    locker.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn client_that_disconnects_mid_request_leaves_nothing_behind() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&b, "beta-1").await;
    // Alpha's createProject blocks inside its transaction.
    abandon_behind_lock(
        &app,
        "tenant_alpha.projects",
        &a,
        "mutation { createProject(input: {name: \"abandoned\"}) { project { id } } }",
    )
    .await;
    let beta = app.gql().token(&b).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(beta["data"]["projects"]["totalCount"], 1, "{beta}");
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_alpha.projects").await,
        0,
        "a cancelled request commits nothing"
    );
}

// A query's `BEGIN` and binding go out with its credential check, before
// PostgreSQL has answered them (pipelined). The next two tests stop that
// first round trip half-way, and make its binding fail.

#[tokio::test]
async fn a_query_stopped_during_its_credential_check_is_not_handed_on() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&b, "beta-1").await;
    // The check reads alpha's sessions: hold it there, inside the
    // transaction its binding opened.
    abandon_behind_lock(&app, "tenant_alpha.sessions", &a, PROJECT_NAMES).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The pool's one connection is not alpha's half-done transaction.
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx, "a stopped query's transaction was handed on");
    let beta = app.gql().token(&b).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(beta["data"]["projects"]["totalCount"], 1, "{beta}");
    let names = beta["data"]["projects"]["edges"][0]["node"]["name"].clone();
    assert_eq!(names, "beta-1");
}

#[tokio::test]
async fn a_request_whose_binding_fails_gets_an_opaque_error_and_its_connection_goes() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&a, "alpha-1").await;
    app.create_project(&b, "beta-1").await;
    // Alpha's role disappears from under the server: `set_config('role')`
    // fails, so the check sent behind it must fail too.
    let role = app.binding("alpha").await.role;
    let role = role.as_str();
    let mut db = app.db().await;
    db.batch_execute(&format!("ALTER ROLE \"{role}\" RENAME TO \"{role}_gone\""))
        .await
        .unwrap();
    let body = app.gql().token(&a).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert!(body["data"].is_null(), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains(role) && !message.contains("transaction"),
        "leaked: {message}"
    );
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx);
    // A mutation's transaction binds the same way (its check runs before,
    // outside any transaction): refused alike, and its aborted connection
    // is not handed to the next tenant either.
    let create = "mutation { createProject(input: {name: \"alpha-2\"}) { project { id } } }";
    let body = app.gql().token(&a).send(create, json!({})).await;
    assert_eq!(code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    let (path, in_tx) = pool_connection_state(&app).await;
    assert!(!path.contains("tenant_"), "{path}");
    assert!(!in_tx);
    let made = app
        .gql()
        .token(&b)
        .send(&create.replace("alpha", "beta"), json!({}))
        .await;
    assert!(made["errors"].is_null(), "{made}");
    let beta = app.gql().token(&b).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(beta["data"]["projects"]["totalCount"], 2, "{beta}");
    // The role back, alpha is served again.
    db.batch_execute(&format!("ALTER ROLE \"{role}_gone\" RENAME TO \"{role}\""))
        .await
        .unwrap();
    let body = app.gql().token(&a).send(PROJECT_NAMES, json!({})).await;
    assert_eq!(body["data"]["projects"]["totalCount"], 1, "{body}");
}

#[tokio::test]
async fn tenant_bound_connection_cannot_fall_back_to_public() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    let mut db = app.db().await;
    // A decoy table in public must never be reached through the tenant path.
    db.batch_execute("CREATE TABLE public.projects (id uuid, name text)")
        .await
        .unwrap();
    let bind = app.binding("alpha").await;
    let mut tx = TenantTx::begin(&app.app.pool, &bind).await.unwrap();
    let path: Vec<String> = diesel::sql_query("SELECT current_setting('search_path') AS path")
        .load::<PathRow>(tx.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(path, vec!["\"tenant_alpha\"".to_owned()]);
    tx.finish(Ok(())).await.unwrap();
}

#[derive(diesel::QueryableByName)]
struct PathRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    path: String,
}

/// What the error of a statement refused by PostgreSQL says.
async fn refused(tx: &mut TenantTx<'_>, sql: &str) -> String {
    tx.conn()
        .batch_execute(&format!("SAVEPOINT s; {sql}"))
        .await
        .expect_err(sql)
        .to_string()
}

#[tokio::test]
async fn tenant_bound_connection_cannot_reach_another_schema_even_by_name() {
    let app = TestApp::spawn().await;
    let a = app.tenant_with_owner("alpha", "enterprise").await;
    let b = app.tenant_with_owner("beta", "enterprise").await;
    app.create_project(&a, "alpha-secret").await;
    app.create_project(&b, "beta-secret").await;
    let bind = app.binding("alpha").await;
    let mut tx = TenantTx::begin(&app.app.pool, &bind).await.unwrap();
    // Its own tables work, by either name.
    let own = count(tx.conn(), "SELECT count(*) AS n FROM tenant_alpha.projects").await;
    assert_eq!(own, 1);
    for sql in [
        "SELECT count(*) FROM tenant_beta.projects",
        "INSERT INTO tenant_beta.projects (id, name) VALUES (gen_random_uuid(), 'planted')",
        "DELETE FROM tenant_beta.users",
        "SELECT count(*) FROM management.tenants",
        "CREATE TABLE tenant_beta.planted (x int)",
        "DROP TABLE tenant_alpha.tasks",
    ] {
        let err = refused(&mut tx, sql).await;
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
        tx.conn()
            .batch_execute("ROLLBACK TO SAVEPOINT s")
            .await
            .unwrap();
    }
    tx.finish(Ok(())).await.unwrap();
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_beta.projects").await,
        1,
        "beta untouched"
    );
    // And the connection went back to the pool as itself.
    let (path, _) = pool_connection_state(&app).await;
    assert!(!path.contains("role still"), "{path}");
}

#[tokio::test]
async fn every_tenant_gets_its_own_role_with_rights_on_its_own_schema_only() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    app.tenant_with_owner("beta", "free").await;
    let (a, b) = (app.binding("alpha").await, app.binding("beta").await);
    assert_ne!(a.role, b.role);
    let mut db = app.db().await;
    let rights = |role: &str, schema: &str| {
        format!(
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = '{schema}' \
             AND has_schema_privilege('{role}', oid, 'USAGE')"
        )
    };
    assert_eq!(
        count(&mut db, &rights(a.role.as_str(), "tenant_alpha")).await,
        1
    );
    assert_eq!(
        count(&mut db, &rights(a.role.as_str(), "tenant_beta")).await,
        0
    );
    assert_eq!(
        count(&mut db, &rights(a.role.as_str(), "management")).await,
        0
    );
    assert_eq!(
        count(&mut db, &rights(b.role.as_str(), "tenant_alpha")).await,
        0
    );
    // The role cannot log in by itself.
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) AS n FROM pg_roles WHERE rolname = '{}' AND NOT rolcanlogin AND NOT rolsuper", a.role)
        )
        .await,
        1
    );
}

#[tokio::test]
async fn tenants_made_before_roles_get_one_on_migrate() {
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("alpha", "free").await;
    let old = app.binding("alpha").await.role;
    // As if the tenant predated per-tenant roles.
    let mut db = app.db().await;
    db.batch_execute(&format!(
        "UPDATE management.tenants SET db_role = NULL; DROP OWNED BY \"{old}\"; DROP ROLE \"{old}\""
    ))
    .await
    .unwrap();
    assert_eq!(
        strata::tenancy::db_role::backfill(&mut db).await.unwrap(),
        1
    );
    assert_eq!(
        strata::tenancy::db_role::backfill(&mut db).await.unwrap(),
        0,
        "once"
    );
    app.app.tenants.clear();
    let new = app.binding("alpha").await.role;
    assert_ne!(new, old);
    let body = app.gql().token(&token).send(PROJECT_NAMES, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
}
