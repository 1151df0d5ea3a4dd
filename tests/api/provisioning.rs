//! createTenant: validation, atomicity, concurrency.

use serde_json::json;
use strata::tenancy::template::TemplateStep;

use crate::common::{CREATE_TENANT, TestApp, code, count};

#[tokio::test]
async fn create_tenant_makes_schema_row_and_owner() {
    let app = TestApp::spawn().await;
    let body = app.create_tenant_raw("acme", "professional").await;
    let tenant = &body["data"]["createTenant"]["tenant"];
    assert_eq!(tenant["slug"], "acme");
    assert_eq!(tenant["schemaName"], "tenant_acme");
    assert_eq!(tenant["status"], "ACTIVE");
    assert_eq!(tenant["plan"]["code"], "professional");
    assert_eq!(
        tenant["templateVersion"],
        strata::tenancy::template::TEMPLATE.len()
    );
    assert_eq!(body["data"]["createTenant"]["owner"]["role"], "owner");

    let mut db = app.db().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'tenant_acme'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_acme.users").await,
        1
    );
    let hash_ok = count(
        &mut db,
        "SELECT count(*) AS n FROM tenant_acme.users WHERE password_hash LIKE '$argon2id$%'",
    )
    .await;
    assert_eq!(hash_ok, 1, "passwords are stored as argon2id hashes");
    // The owner can sign in straight away.
    assert!(
        app.login("acme", "owner@acme.test", "password-123")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn taken_slug_is_conflict() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("acme", "free").await;
    let again = app.create_tenant_raw("acme", "free").await;
    assert_eq!(code(&again), "CONFLICT");
    assert_eq!(again["errors"][0]["extensions"]["field"], "slug");
}

#[tokio::test]
async fn bad_slugs_are_refused_and_touch_nothing() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(41);
    let cases = [
        "a\"; drop schema management cascade; --",
        "x'; DROP TABLE management.tenants; --",
        "Acme",
        "ACME",
        "management",
        "public",
        "template",
        "pg_toast",
        "pg_x",
        long.as_str(),
        "a",
        "1abc",
        "ac-me",
        "",
    ];
    for slug in cases {
        let body = app.create_tenant_raw(slug, "free").await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "slug {slug:?}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "slug", "{slug:?}");
    }
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.tenants").await,
        0
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.plans").await,
        4
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname LIKE 'tenant%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn other_bad_input_is_refused_with_its_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"plan": "platinum"}), "plan"),
        (json!({"name": "  "}), "name"),
        (
            json!({"owner": {"email": "not-an-email", "password": "password-123", "displayName": "O"}}),
            "owner.email",
        ),
        (
            json!({"owner": {"email": "o@x.test", "password": "short", "displayName": "O"}}),
            "owner.password",
        ),
        (
            json!({"owner": {"email": "o@x.test", "password": "password-123", "displayName": ""}}),
            "owner.displayName",
        ),
    ];
    for (patch, field) in cases {
        let mut input = json!({
            "slug": "acme", "name": "Acme", "plan": "free",
            "owner": { "email": "o@x.test", "password": "password-123", "displayName": "O" }
        });
        for (k, v) in patch.as_object().unwrap() {
            input[k] = v.clone();
        }
        let body = app
            .gql()
            .admin()
            .send(CREATE_TENANT, json!({ "input": input }))
            .await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{field}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.tenants").await,
        0
    );
}

static BROKEN_TEMPLATE: &[TemplateStep] = &[
    TemplateStep {
        version: 1,
        name: "0001_ok",
        sql: "CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL, display_name text NOT NULL, \
              password_hash text NOT NULL, role text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), \
              updated_at timestamptz NOT NULL DEFAULT now()); CREATE TABLE step_one (x int);",
    },
    TemplateStep {
        version: 2,
        name: "0002_broken",
        sql: "CREATE TABLE step_two (x int); SELECT no_such_function();",
    },
];

#[tokio::test]
async fn failing_template_step_leaves_no_schema_and_no_row() {
    let app = TestApp::builder().template(BROKEN_TEMPLATE).spawn().await;
    let body = app.create_tenant_raw("acme", "free").await;
    assert_eq!(code(&body), "INTERNAL_SERVER_ERROR");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert_eq!(message, "internal server error", "no SQL detail leaks");
    let mut db = app.db().await;
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.tenants").await,
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'tenant_acme'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_class WHERE relname IN ('step_one', 'step_two')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_creates_of_one_slug_give_one_tenant_and_conflicts() {
    let app = TestApp::builder().pool_size(8).spawn().await;
    let attempts =
        futures::future::join_all((0..6).map(|_| app.create_tenant_raw("race", "free"))).await;
    let ok = attempts.iter().filter(|b| b["errors"].is_null()).count();
    let conflicts = attempts.iter().filter(|b| code(b) == "CONFLICT").count();
    assert_eq!((ok, conflicts), (1, 5), "{attempts:?}");
    let mut db = app.db().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM management.tenants WHERE slug = 'race'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM tenant_race.users").await,
        1
    );
}

#[tokio::test]
async fn orphan_schema_is_never_adopted() {
    let app = TestApp::spawn().await;
    let mut db = app.db().await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut db, "CREATE SCHEMA tenant_ghost")
        .await
        .unwrap();
    let body = app.create_tenant_raw("ghost", "free").await;
    assert_eq!(code(&body), "CONFLICT");
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.tenants").await,
        0
    );
}

#[tokio::test]
async fn tenants_lists_with_pagination() {
    let app = TestApp::spawn().await;
    for slug in ["aa", "bb", "cc"] {
        app.create_tenant_raw(slug, "free").await;
    }
    let q = "query($a: String) { tenants(first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor } edges { node { slug } } } }";
    let page1 = app.gql().admin().send(q, json!({})).await;
    let t = &page1["data"]["tenants"];
    assert_eq!(t["totalCount"], 3);
    assert_eq!(t["edges"][0]["node"]["slug"], "aa");
    assert_eq!(t["pageInfo"]["hasNextPage"], true);
    let page2 = app
        .gql()
        .admin()
        .send(q, json!({ "a": t["pageInfo"]["endCursor"] }))
        .await;
    let t2 = &page2["data"]["tenants"];
    assert_eq!(t2["edges"][0]["node"]["slug"], "cc");
    assert_eq!(t2["pageInfo"]["hasNextPage"], false);
}
