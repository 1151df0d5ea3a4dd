//! Sessions: access and refresh tokens, rotation, revocation, throttling.

use serde_json::{Value, json};

use crate::common::{TestApp, code};

const REFRESH: &str = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { token refreshToken session { id } } }";
const ME: &str = "{ me { email } }";

async fn refresh(app: &TestApp, slug: &str, token: &str) -> Value {
    app.gql()
        .tenant(slug)
        .send(REFRESH, json!({ "t": token }))
        .await
}

async fn login_code(app: &TestApp, slug: &str, email: &str, password: &str) -> String {
    match app.login(slug, email, password).await {
        Ok(_) => String::new(),
        Err(code) => code,
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("acme", "free").await;
    let first = app
        .login_full("acme", "owner@acme.test", "password-123")
        .await
        .unwrap();
    let rotated = refresh(&app, "acme", &first.refresh_token).await;
    assert!(rotated["errors"].is_null(), "{rotated}");
    let second = rotated["data"]["refreshSession"].clone();
    assert_eq!(
        second["session"]["id"],
        first.session_id.as_str(),
        "same session"
    );
    let new_access = second["token"].as_str().unwrap().to_owned();
    let new_refresh = second["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, first.refresh_token);
    let me = app.gql().token(&new_access).send(ME, json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "owner@acme.test");

    // The spent token comes back (a thief's copy): refused, and the whole
    // session ends, the legitimate newest tokens included.
    let reuse = refresh(&app, "acme", &first.refresh_token).await;
    assert_eq!(code(&reuse), "UNAUTHENTICATED", "{reuse}");
    let after = refresh(&app, "acme", &new_refresh).await;
    assert_eq!(code(&after), "UNAUTHENTICATED", "{after}");
    for token in [&first.token, &new_access] {
        let me = app.gql().token(token).send(ME, json!({})).await;
        assert_eq!(code(&me), "UNAUTHENTICATED", "{me}");
    }
    // Other sessions of the same user are untouched.
    assert!(
        app.login("acme", "owner@acme.test", "password-123")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_at_most_one_through() {
    let app = TestApp::builder().pool_size(8).spawn().await;
    app.tenant_with_owner("acme", "free").await;
    let s = app
        .login_full("acme", "owner@acme.test", "password-123")
        .await
        .unwrap();
    let answers =
        futures::future::join_all((0..5).map(|_| refresh(&app, "acme", &s.refresh_token))).await;
    let ok = answers.iter().filter(|b| b["errors"].is_null()).count();
    assert!(ok <= 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|b| b["errors"].is_null() || code(b) == "UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn a_revoked_session_and_a_logout_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let phone = app
        .login_full("acme", "owner@acme.test", "password-123")
        .await
        .unwrap();
    let sessions = app
        .gql()
        .token(&owner)
        .send("{ mySessions { id current } }", json!({}))
        .await;
    let list = sessions["data"]["mySessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{sessions}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let revoke = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: RevokeSessionInput!) { revokeSession(input: $i) { session { id } } }",
            json!({ "i": { "id": phone.session_id } }),
        )
        .await;
    assert!(revoke["errors"].is_null(), "{revoke}");
    let me = app.gql().token(&phone.token).send(ME, json!({})).await;
    assert_eq!(code(&me), "UNAUTHENTICATED", "{me}");
    assert_eq!(
        code(&refresh(&app, "acme", &phone.refresh_token).await),
        "UNAUTHENTICATED"
    );

    let logout = app
        .gql()
        .token(&owner)
        .send("mutation { logout { session { id } } }", json!({}))
        .await;
    assert!(logout["errors"].is_null(), "{logout}");
    let me = app.gql().token(&owner).send(ME, json!({})).await;
    assert_eq!(code(&me), "UNAUTHENTICATED");
}

#[tokio::test]
async fn nobody_ends_another_users_session_without_rights() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let owner_session = app
        .gql()
        .token(&owner)
        .send("{ mySessions { id } }", json!({}))
        .await["data"]["mySessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempt = app
        .gql()
        .token(&mia.token)
        .send(
            "mutation($i: RevokeSessionInput!) { revokeSession(input: $i) { session { id } } }",
            json!({ "i": { "id": owner_session } }),
        )
        .await;
    assert_eq!(code(&attempt), "NOT_FOUND", "{attempt}");
    let me = app.gql().token(&owner).send(ME, json!({})).await;
    assert!(me["errors"].is_null(), "the owner is still signed in");
    // A manager may end a member's session.
    let by_owner = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: RevokeSessionInput!) { revokeSession(input: $i) { session { id } } }",
            json!({ "i": { "id": mia.session_id } }),
        )
        .await;
    assert!(by_owner["errors"].is_null(), "{by_owner}");
    assert_eq!(
        code(&app.gql().token(&mia.token).send(ME, json!({})).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_then_refused_for_that_email_only() {
    let app = TestApp::builder().login_lock_after(4).spawn().await;
    app.tenant_with_owner("acme", "free").await;
    app.tenant_with_owner("globex", "free").await;
    for _ in 0..3 {
        assert_eq!(
            login_code(&app, "acme", "owner@acme.test", "wrong-pass").await,
            "UNAUTHENTICATED"
        );
    }
    let fourth = app
        .gql()
        .tenant("acme")
        .send(
            "mutation { login(email: \"OWNER@acme.test\", password: \"wrong-pass\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&fourth), "RATE_LIMITED", "{fourth}");
    assert!(
        fourth["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_i64()
            .unwrap()
            > 0
    );
    // Locked: even the right password is refused for now.
    assert_eq!(
        login_code(&app, "acme", "owner@acme.test", "password-123").await,
        "RATE_LIMITED"
    );
    // Other emails and other tenants are not affected.
    assert_eq!(
        login_code(&app, "acme", "someone@acme.test", "wrong-pass").await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        login_code(&app, "globex", "owner@globex.test", "password-123").await,
        ""
    );
    // Unknown emails are throttled just the same (no hint they don't exist).
    for _ in 0..3 {
        login_code(&app, "acme", "ghost@acme.test", "wrong-pass").await;
    }
    assert_eq!(
        login_code(&app, "acme", "ghost@acme.test", "wrong-pass").await,
        "RATE_LIMITED"
    );
}

#[tokio::test]
async fn a_successful_login_resets_the_count() {
    let app = TestApp::builder().login_lock_after(3).spawn().await;
    app.tenant_with_owner("acme", "free").await;
    for _ in 0..2 {
        login_code(&app, "acme", "owner@acme.test", "wrong-pass").await;
    }
    assert_eq!(
        login_code(&app, "acme", "owner@acme.test", "password-123").await,
        ""
    );
    for _ in 0..2 {
        assert_eq!(
            login_code(&app, "acme", "owner@acme.test", "wrong-pass").await,
            "UNAUTHENTICATED"
        );
    }
}

#[tokio::test]
async fn parallel_guesses_cannot_outrun_the_lock() {
    let app = TestApp::builder()
        .pool_size(8)
        .login_lock_after(4)
        .spawn()
        .await;
    app.tenant_with_owner("acme", "free").await;
    let guesses = futures::future::join_all(
        (0..12).map(|_| login_code(&app, "acme", "owner@acme.test", "wrong-pass")),
    )
    .await;
    let checked = guesses
        .iter()
        .filter(|c| c.as_str() == "UNAUTHENTICATED")
        .count();
    assert!(checked <= 4, "at most 4 passwords checked: {guesses:?}");
    assert!(
        guesses
            .iter()
            .all(|c| c == "UNAUTHENTICATED" || c == "RATE_LIMITED")
    );
    assert_eq!(
        login_code(&app, "acme", "owner@acme.test", "password-123").await,
        "RATE_LIMITED"
    );
}
