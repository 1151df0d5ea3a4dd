//! Members, teams and invitations.

use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

use crate::common::{TestApp, code};

const CREATE_USER: &str =
    "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id email } } }";
const INVITE: &str = "mutation($i: InviteUserInput!) { inviteUser(input: $i) { token invitation { id status role { key } } } }";
const ACCEPT: &str = "mutation($i: AcceptInvitationInput!) { acceptInvitation(input: $i) { token user { email roles { role { key } } } } }";

fn new_user(email: &str) -> Value {
    json!({ "i": { "email": email, "displayName": "New", "password": "password-123" } })
}

async fn accept(app: &TestApp, slug: &str, token: &str) -> Value {
    app.gql()
        .tenant(slug)
        .send(ACCEPT, json!({ "i": { "token": token, "displayName": "Invitee", "password": "password-123" } }))
        .await
}

#[tokio::test]
async fn the_seat_limit_holds_for_users_and_invitations() {
    let app = TestApp::spawn().await;
    // free: one seat, taken by the owner.
    let owner = app.tenant_with_owner("tiny", "free").await;
    let body = app
        .gql()
        .token(&owner)
        .send(CREATE_USER, new_user("two@tiny.test"))
        .await;
    assert_eq!(code(&body), "PLAN_LIMIT_EXCEEDED", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["limit"], "seats");
    let invite = app
        .gql()
        .token(&owner)
        .send(INVITE, json!({ "i": { "email": "two@tiny.test" } }))
        .await;
    assert_eq!(code(&invite), "PLAN_LIMIT_EXCEEDED", "{invite}");
    // professional: 10 seats; 6 creates at once on 1 + 8 used leave exactly 10.
    let pro = app.tenant_with_owner("pro", "professional").await;
    for i in 0..8 {
        let b = app
            .gql()
            .token(&pro)
            .send(CREATE_USER, new_user(&format!("u{i}@pro.test")))
            .await;
        assert!(b["errors"].is_null(), "{b}");
    }
    let racers = futures::future::join_all((0..6).map(|i| {
        let app = &app;
        let pro = &pro;
        async move {
            app.gql()
                .token(pro)
                .send(CREATE_USER, new_user(&format!("r{i}@pro.test")))
                .await
        }
    }))
    .await;
    assert_eq!(
        racers.iter().filter(|b| b["errors"].is_null()).count(),
        1,
        "{racers:?}"
    );
    let usage = app
        .gql()
        .token(&pro)
        .send("{ usage { seatsUsed seatsLimit } }", json!({}))
        .await;
    assert_eq!(
        usage["data"]["usage"],
        json!({ "seatsUsed": 10, "seatsLimit": 10 })
    );
}

/// The usage page reads the plans (management data the tenant's role cannot
/// read) in the middle of a query whose other fields already hold a pooled
/// connection: it must not need a second one.
#[tokio::test]
async fn usage_is_served_by_a_pool_of_one_alongside_other_reads() {
    let app = TestApp::builder().pool_size(1).spawn().await;
    let owner = app.tenant_with_owner("solo", "professional").await;
    app.create_project(&owner, "first").await;
    let page = "{ me { email } projects(first: 5) { totalCount } \
                usage { plan seatsUsed seatsLimit projectsUsed } }";
    let bodies = futures::future::join_all((0..4).map(|_| {
        let app = &app;
        let owner = &owner;
        async move { app.gql().token(owner).send(page, json!({})).await }
    }))
    .await;
    for body in bodies {
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(
            body["data"]["usage"],
            json!({ "plan": "professional", "seatsUsed": 1, "seatsLimit": 10, "projectsUsed": 1 })
        );
        assert_eq!(body["data"]["projects"]["totalCount"], 1);
    }
}

#[tokio::test]
async fn emails_are_unique_per_tenant_whatever_their_case() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let dup = app
        .gql()
        .token(&owner)
        .send(CREATE_USER, new_user("Owner@ACME.test"))
        .await;
    assert_eq!(code(&dup), "CONFLICT", "{dup}");
    assert_eq!(dup["errors"][0]["extensions"]["field"], "email");
    let bad = app
        .gql()
        .token(&owner)
        .send(CREATE_USER, new_user("not an email"))
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT");
    // The same email in another tenant is another user.
    let other = app.tenant_with_owner("globex", "enterprise").await;
    let ok = app
        .gql()
        .token(&other)
        .send(CREATE_USER, new_user("owner@acme.test"))
        .await;
    assert!(ok["errors"].is_null(), "{ok}");
}

#[tokio::test]
async fn a_disabled_user_is_locked_out_at_once_and_can_come_back() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let set = |op: &'static str| {
        let (app, owner, id) = (&app, owner.clone(), mia.user_id.clone());
        async move {
            app.gql()
                .token(&owner)
                .send(
                    &format!(
                        "mutation($i: UserIdInput!) {{ {op}(input: $i) {{ user {{ disabled }} }} }}"
                    ),
                    json!({ "i": { "id": id } }),
                )
                .await
        }
    };
    let off = set("disableUser").await;
    assert_eq!(
        off["data"]["disableUser"]["user"]["disabled"], true,
        "{off}"
    );
    assert_eq!(
        code(
            &app.gql()
                .token(&mia.token)
                .send("{ me { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.login("acme", "mia@acme.test", "password-123").await,
        Err("UNAUTHENTICATED".into())
    );
    let listed = app
        .gql()
        .token(&owner)
        .send(
            "{ users { totalCount } all: users(includeDisabled: true) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["users"]["totalCount"], 1);
    assert_eq!(listed["data"]["all"]["totalCount"], 2);
    let on = set("enableUser").await;
    assert_eq!(on["data"]["enableUser"]["user"]["disabled"], false, "{on}");
    assert!(
        app.login("acme", "mia@acme.test", "password-123")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn profiles_and_passwords() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let sam = app.member(&owner, "acme", "sam", "member").await;
    let update = |token: String, id: String, name: &'static str| {
        let app = &app;
        async move {
            app.gql()
                .token(&token)
                .send(
                    "mutation($i: UpdateUserInput!) { updateUser(input: $i) { user { displayName } } }",
                    json!({ "i": { "id": id, "displayName": name } }),
                )
                .await
        }
    };
    let own = update(mia.token.clone(), mia.user_id.clone(), "Mia M").await;
    assert_eq!(
        own["data"]["updateUser"]["user"]["displayName"], "Mia M",
        "{own}"
    );
    let other = update(mia.token.clone(), sam.user_id.clone(), "Hacked").await;
    assert_eq!(code(&other), "FORBIDDEN");
    // Changing the password ends the other sessions, keeps this one.
    let laptop = app
        .login_full("acme", "mia@acme.test", "password-123")
        .await
        .unwrap();
    let wrong = app
        .gql()
        .token(&mia.token)
        .send(
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { user { id } } }",
            json!({ "i": { "currentPassword": "nope-nope", "newPassword": "new-password-1" } }),
        )
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT");
    let changed = app
        .gql()
        .token(&mia.token)
        .send(
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { user { id } } }",
            json!({ "i": { "currentPassword": "password-123", "newPassword": "new-password-1" } }),
        )
        .await;
    assert!(changed["errors"].is_null(), "{changed}");
    assert!(
        app.gql()
            .token(&mia.token)
            .send("{ me { id } }", json!({}))
            .await["errors"]
            .is_null()
    );
    assert_eq!(
        code(
            &app.gql()
                .token(&laptop.token)
                .send("{ me { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.login("acme", "mia@acme.test", "password-123").await,
        Err("UNAUTHENTICATED".into())
    );
    assert!(
        app.login("acme", "mia@acme.test", "new-password-1")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn invitations_are_single_use_revocable_and_expire() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    app.tenant_with_owner("globex", "enterprise").await;
    let invite = |email: &'static str| {
        let (app, owner) = (&app, owner.clone());
        async move {
            app.gql()
                .token(&owner)
                .send(INVITE, json!({ "i": { "email": email, "role": "viewer" } }))
                .await
        }
    };
    let made = invite("new@acme.test").await;
    assert_eq!(
        made["data"]["inviteUser"]["invitation"]["status"], "pending",
        "{made}"
    );
    assert_eq!(
        made["data"]["inviteUser"]["invitation"]["role"]["key"],
        "viewer"
    );
    let token = made["data"]["inviteUser"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = invite("NEW@acme.test").await;
    assert_eq!(
        code(&again),
        "CONFLICT",
        "one open invitation per email: {again}"
    );
    // Another tenant does not know this token.
    assert_eq!(
        code(&accept(&app, "globex", &token).await),
        "BAD_USER_INPUT"
    );
    let joined = accept(&app, "acme", &token).await;
    assert!(joined["errors"].is_null(), "{joined}");
    assert_eq!(
        joined["data"]["acceptInvitation"]["user"]["email"],
        "new@acme.test"
    );
    assert_eq!(
        joined["data"]["acceptInvitation"]["user"]["roles"][0]["role"]["key"],
        "viewer"
    );
    let session = joined["data"]["acceptInvitation"]["token"]
        .as_str()
        .unwrap();
    assert!(
        app.gql()
            .token(session)
            .send("{ me { id } }", json!({}))
            .await["errors"]
            .is_null()
    );
    let twice = accept(&app, "acme", &token).await;
    assert_eq!(code(&twice), "BAD_USER_INPUT", "single use: {twice}");

    // Revoked.
    let made = invite("late@acme.test").await;
    let (id, token) = (
        made["data"]["inviteUser"]["invitation"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        made["data"]["inviteUser"]["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let revoked = app
        .gql()
        .token(&owner)
        .send("mutation($i: RevokeInvitationInput!) { revokeInvitation(input: $i) { invitation { status } } }", json!({ "i": { "id": id } }))
        .await;
    assert_eq!(
        revoked["data"]["revokeInvitation"]["invitation"]["status"], "revoked",
        "{revoked}"
    );
    assert_eq!(code(&accept(&app, "acme", &token).await), "BAD_USER_INPUT");

    // Expired (7 days by default; moved into the past here).
    let made = invite("slow@acme.test").await;
    let token = made["data"]["inviteUser"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut db = app.db().await;
    db.batch_execute("UPDATE tenant_acme.invitations SET expires_at = now() - interval '1 second' WHERE email = 'slow@acme.test'")
        .await
        .unwrap();
    assert_eq!(code(&accept(&app, "acme", &token).await), "BAD_USER_INPUT");
    // An expired invitation can be sent again.
    assert!(invite("slow@acme.test").await["errors"].is_null());
    let users = crate::common::count(&mut db, "SELECT count(*) AS n FROM tenant_acme.users").await;
    assert_eq!(users, 2, "the owner and the one accepted invitation");
}

#[tokio::test]
async fn teams_nest_and_keep_their_shape() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let create = |name: &'static str, parent: Option<String>| {
        let (app, owner) = (&app, owner.clone());
        async move {
            app.gql()
                .token(&owner)
                .send(
                    "mutation($i: CreateTeamInput!) { createTeam(input: $i) { team { id name parent { name } } } }",
                    json!({ "i": { "name": name, "parentId": parent } }),
                )
                .await
        }
    };
    let eng = create("Engineering", None).await;
    let eng_id = eng["data"]["createTeam"]["team"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{eng}"))
        .to_owned();
    let web = create("Web", Some(eng_id.clone())).await;
    assert_eq!(
        web["data"]["createTeam"]["team"]["parent"]["name"],
        "Engineering"
    );
    let web_id = web["data"]["createTeam"]["team"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        code(&create("web", Some(eng_id.clone())).await),
        "CONFLICT",
        "sibling names differ"
    );
    assert!(
        create("Web", None).await["errors"].is_null(),
        "same name elsewhere is fine"
    );
    let add = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: TeamMemberInput!) { addTeamMember(input: $i) { team { members { email } } } }",
            json!({ "i": { "teamId": web_id, "userId": mia.user_id } }),
        )
        .await;
    assert_eq!(
        add["data"]["addTeamMember"]["team"]["members"][0]["email"], "mia@acme.test",
        "{add}"
    );
    let tree = app
        .gql()
        .token(&mia.token)
        .send(
            "{ teams { name children { name members { email } } } }",
            json!({}),
        )
        .await;
    let eng = tree["data"]["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Engineering")
        .unwrap()
        .clone();
    assert_eq!(
        eng["children"][0]["members"][0]["email"], "mia@acme.test",
        "{tree}"
    );
    let cycle = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: UpdateTeamInput!) { updateTeam(input: $i) { team { id } } }",
            json!({ "i": { "id": eng_id, "parentId": web_id } }),
        )
        .await;
    assert_eq!(code(&cycle), "BAD_USER_INPUT", "{cycle}");
    let delete = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: DeleteTeamInput!) { deleteTeam(input: $i) { deletedTeamId } }",
            json!({ "i": { "id": eng_id } }),
        )
        .await;
    assert_eq!(code(&delete), "CONFLICT", "it has a sub-team: {delete}");
    let by_member = app
        .gql()
        .token(&mia.token)
        .send(
            "mutation { createTeam(input: {name: \"Mine\"}) { team { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&by_member), "FORBIDDEN");
}

#[tokio::test]
async fn access_changes_are_audited_with_who_did_them() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let events = app
        .gql()
        .token(&owner)
        .send("{ auditEvents(first: 10) { edges { node { action actorKind actorUserId targetId detail } } } }", json!({}))
        .await;
    let first = &events["data"]["auditEvents"]["edges"][0]["node"];
    assert_eq!(first["action"], "user.created", "{events}");
    assert_eq!(first["actorKind"], "user");
    assert_eq!(first["targetId"], mia.user_id.as_str());
    assert_eq!(first["detail"], "member");
    let denied = app
        .gql()
        .token(&mia.token)
        .send("{ auditEvents { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(code(&denied), "FORBIDDEN");
}
