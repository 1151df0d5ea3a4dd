//! Suspend, resume, delete, restore, purge: as seen through the API.

use serde_json::{Value, json};

use crate::common::{TestApp, code, count};

async fn change(app: &TestApp, op: &str, slug: &str) -> Value {
    app.gql()
        .admin()
        .send(
            &format!("mutation($i: TenantChangeInput!) {{ {op}(input: $i) {{ tenant {{ status deletedAt }} }} }}"),
            json!({ "i": { "slug": slug, "reason": format!("test: {op}") } }),
        )
        .await
}

async fn purge(app: &TestApp, slug: &str, confirm: &str) -> Value {
    app.gql()
        .admin()
        .send(
            "mutation($i: PurgeTenantInput!) { purgeTenant(input: $i) { purgedSlug } }",
            json!({ "i": { "slug": slug, "confirmSlug": confirm, "reason": "closing the account" } }),
        )
        .await
}

const PROJECTS: &str = "{ projects { totalCount } }";

#[tokio::test]
async fn a_tenants_life_through_the_api() {
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("acme", "free").await;
    app.create_project(&token, "kept").await;

    let s = change(&app, "suspendTenant", "acme").await;
    assert_eq!(
        s["data"]["suspendTenant"]["tenant"]["status"], "SUSPENDED",
        "{s}"
    );
    assert_eq!(
        code(&app.gql().token(&token).send(PROJECTS, json!({})).await),
        "TENANT_SUSPENDED"
    );
    let admin = app
        .gql()
        .admin()
        .send("{ tenant(slug: \"acme\") { status } }", json!({}))
        .await;
    assert_eq!(
        admin["data"]["tenant"]["status"], "SUSPENDED",
        "the admin API still works"
    );
    assert_eq!(
        code(&change(&app, "suspendTenant", "acme").await),
        "CONFLICT",
        "already suspended"
    );

    change(&app, "resumeTenant", "acme").await;
    let ok = app.gql().token(&token).send(PROJECTS, json!({})).await;
    assert_eq!(ok["data"]["projects"]["totalCount"], 1, "{ok}");

    let d = change(&app, "deleteTenant", "acme").await;
    assert_eq!(d["data"]["deleteTenant"]["tenant"]["status"], "DELETED");
    assert!(d["data"]["deleteTenant"]["tenant"]["deletedAt"].is_string());
    assert_eq!(
        code(&app.gql().token(&token).send(PROJECTS, json!({})).await),
        "TENANT_NOT_FOUND"
    );
    let taken = app.create_tenant_raw("acme", "free").await;
    assert_eq!(code(&taken), "CONFLICT", "a deleted tenant keeps its slug");

    change(&app, "restoreTenant", "acme").await;
    let back = app.gql().token(&token).send(PROJECTS, json!({})).await;
    assert_eq!(
        back["data"]["projects"]["totalCount"], 1,
        "the data came back: {back}"
    );

    let events = app
        .gql()
        .admin()
        .send(
            "{ tenant(slug: \"acme\") { events { action actor reason } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&str> = events["data"]["tenant"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["restored", "deleted", "resumed", "suspended"],
        "{events}"
    );
    assert_eq!(events["data"]["tenant"]["events"][0]["actor"], "admin");
    assert_eq!(
        events["data"]["tenant"]["events"][0]["reason"],
        "test: restoreTenant"
    );

    // Tenant credentials cannot do any of this; a reason is required.
    let by_owner = app
        .gql()
        .token(&token)
        .send("mutation { suspendTenant(input: {slug: \"acme\", reason: \"x\"}) { tenant { status } } }", json!({}))
        .await;
    assert_eq!(code(&by_owner), "FORBIDDEN");
    let no_reason = app
        .gql()
        .admin()
        .send("mutation { suspendTenant(input: {slug: \"acme\", reason: \" \"}) { tenant { status } } }", json!({}))
        .await;
    assert_eq!(code(&no_reason), "BAD_USER_INPUT");
    assert_eq!(
        code(&change(&app, "suspendTenant", "nobody").await),
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn purge_drops_schema_role_and_row_only_when_confirmed_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("acme", "free").await;
    app.tenant_with_owner("globex", "free").await;
    let role = app.binding("acme").await.role;
    assert_eq!(
        code(&purge(&app, "acme", "acme").await),
        "CONFLICT",
        "delete it first"
    );
    change(&app, "deleteTenant", "acme").await;
    let wrong = purge(&app, "acme", "acne").await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT", "{wrong}");
    assert_eq!(wrong["errors"][0]["extensions"]["field"], "confirmSlug");
    let mut db = app.db().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'tenant_acme'"
        )
        .await,
        1,
        "nothing dropped yet"
    );
    let done = purge(&app, "acme", "acme").await;
    assert_eq!(done["data"]["purgeTenant"]["purgedSlug"], "acme", "{done}");
    for (what, sql) in [
        (
            "schema",
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'tenant_acme'".to_owned(),
        ),
        (
            "row",
            "SELECT count(*) AS n FROM management.tenants WHERE slug = 'acme'".to_owned(),
        ),
        (
            "role",
            format!("SELECT count(*) AS n FROM pg_roles WHERE rolname = '{role}'"),
        ),
    ] {
        assert_eq!(count(&mut db, &sql).await, 0, "{what} left behind");
    }
    assert_eq!(
        count(&mut db, "SELECT count(*) AS n FROM management.tenant_events WHERE slug = 'acme' AND action = 'purged'").await,
        1,
        "the purge is recorded"
    );
    assert_eq!(
        code(&app.gql().token(&token).send(PROJECTS, json!({})).await),
        "TENANT_NOT_FOUND"
    );
    // Others untouched; the slug is free again.
    assert!(
        app.login("globex", "owner@globex.test", "password-123")
            .await
            .is_ok()
    );
    assert!(app.create_tenant_raw("acme", "free").await["errors"].is_null());
}

#[tokio::test]
async fn a_deleted_tenant_past_retention_cannot_be_restored() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("acme", "free").await;
    change(&app, "deleteTenant", "acme").await;
    let mut db = app.db().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut db,
        "UPDATE management.tenants SET deleted_at = now() - interval '31 days'",
    )
    .await
    .unwrap();
    let late = change(&app, "restoreTenant", "acme").await;
    assert_eq!(code(&late), "CONFLICT", "{late}");
}
