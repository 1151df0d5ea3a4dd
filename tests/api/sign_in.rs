//! login, me, and who may call what.

use serde_json::json;

use crate::common::{TestApp, code};

#[tokio::test]
async fn login_returns_a_token_me_uses() {
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("acme", "free").await;
    let me = app
        .gql()
        .token(&token)
        .send(
            "{ me { email roles { role { key } } displayName } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["me"]["email"], "owner@acme.test");
    assert_eq!(me["data"]["me"]["roles"][0]["role"]["key"], "owner");
    // Email is matched whatever its case.
    assert!(
        app.login("acme", "OWNER@Acme.Test", "password-123")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("acme", "free").await;
    let wrong = app
        .gql()
        .tenant("acme")
        .send(
            "mutation { login(email: \"owner@acme.test\", password: \"nope-nope\") { token } }",
            json!({}),
        )
        .await;
    let unknown = app
        .gql()
        .tenant("acme")
        .send(
            "mutation { login(email: \"ghost@acme.test\", password: \"nope-nope\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert!(wrong["data"].is_null());
}

#[tokio::test]
async fn owner_of_one_tenant_cannot_sign_in_to_another() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    app.tenant_with_owner("beta", "free").await;
    assert_eq!(
        app.login("beta", "owner@alpha.test", "password-123").await,
        Err("UNAUTHENTICATED".into())
    );
}

#[tokio::test]
async fn tenant_data_needs_credentials() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("acme", "free").await;
    let anonymous = app
        .gql()
        .tenant("acme")
        .send("{ projects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    let forged = app
        .gql()
        .tenant("acme")
        .token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad")
        .send("{ projects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&forged), "UNAUTHENTICATED");
    // The admin token reaches tenant data, in a tenant context.
    let admin = app
        .gql()
        .tenant("acme")
        .admin()
        .send("{ projects { totalCount } me { email } }", json!({}))
        .await;
    assert_eq!(admin["data"]["projects"]["totalCount"], 0, "{admin}");
    assert!(admin["data"]["me"].is_null());
}

#[tokio::test]
async fn platform_operations_need_the_admin_token() {
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("acme", "free").await;
    let as_user = app
        .gql()
        .token(&token)
        .send("{ plans { code } }", json!({}))
        .await;
    assert_eq!(code(&as_user), "FORBIDDEN");
    let anonymous = app
        .gql()
        .send("{ tenants { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    let create = app
        .gql()
        .token(&token)
        .send(
            crate::common::CREATE_TENANT,
            json!({"input": {"slug": "evil", "name": "E", "plan": "free",
                   "owner": {"email": "e@e.test", "password": "password-123", "displayName": "E"}}}),
        )
        .await;
    assert_eq!(code(&create), "FORBIDDEN");
    let plans = app
        .gql()
        .admin()
        .send(
            "{ plans { code priceCents maxSeats maxProjects apiCallsPerMonth storageGb hipaa } }",
            json!({}),
        )
        .await;
    let plans = plans["data"]["plans"].as_array().unwrap();
    let codes: Vec<&str> = plans.iter().map(|p| p["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["free", "professional", "enterprise", "research"]);
    assert_eq!(plans[2]["maxSeats"], serde_json::Value::Null);
    assert_eq!(plans[2]["hipaa"], true);
    assert_eq!(plans[1]["priceCents"], 29900);
}
