//! Roles, permissions and API keys: who may do what inside a tenant.

use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

use crate::common::{TestApp, code};

const MY_PERMISSIONS: &str = "{ myPermissions }";
const CREATE_PROJECT: &str =
    "mutation($n: String!) { createProject(input: {name: $n}) { project { id } } }";
const PROJECTS: &str = "{ projects(first: 10) { totalCount } }";

fn permissions(body: &Value) -> Vec<String> {
    body["data"]["myPermissions"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// The id of the role with `key`.
async fn role_id(app: &TestApp, token: &str, key: &str) -> String {
    let body = app
        .gql()
        .token(token)
        .send("{ roles { id key } }", json!({}))
        .await;
    body["data"]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no role {key}: {body}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn assign(app: &TestApp, token: &str, user: &str, role: &str, expires: Value) -> Value {
    app.gql()
        .token(token)
        .send(
            "mutation($i: AssignRoleInput!) { assignRole(input: $i) { user { id roles { role { key } expired } } } }",
            json!({ "i": { "userId": user, "roleId": role, "expiresAt": expires } }),
        )
        .await
}

async fn unassign(app: &TestApp, token: &str, user: &str, role: &str) -> Value {
    app.gql()
        .token(token)
        .send(
            "mutation($i: UnassignRoleInput!) { unassignRole(input: $i) { user { id } } }",
            json!({ "i": { "userId": user, "roleId": role } }),
        )
        .await
}

#[tokio::test]
async fn the_owner_holds_the_whole_catalogue_and_each_role_its_share() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let catalogue = app
        .gql()
        .token(&owner)
        .send("{ permissions { name description } }", json!({}))
        .await;
    let mut all: Vec<String> = catalogue["data"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    all.sort();
    let mine = permissions(
        &app.gql()
            .token(&owner)
            .send(MY_PERMISSIONS, json!({}))
            .await,
    );
    assert_eq!(mine, all, "the owner has every permission");

    let viewer = app.member(&owner, "acme", "vera", "viewer").await;
    assert_eq!(
        permissions(
            &app.gql()
                .token(&viewer.token)
                .send(MY_PERMISSIONS, json!({}))
                .await
        ),
        vec!["members:read", "projects:read", "tasks:read"]
    );
    // Listing roles with their permissions costs the same for 4 roles or 7.
    let statements = || async {
        let before = app.app.query_stats.statements();
        let body = app
            .gql()
            .token(&owner)
            .send(
                "{ roles { key permissions effectivePermissions parent { key } } }",
                json!({}),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
        app.app.query_stats.statements() - before
    };
    let few = statements().await;
    for key in ["r1", "r2", "r3"] {
        let made = app
            .gql()
            .token(&owner)
            .send(
                "mutation($k: String!) { createRole(input: {key: $k, name: $k, permissions: [\"projects:read\"]}) { role { id } } }",
                json!({ "k": key }),
            )
            .await;
        assert!(made["errors"].is_null(), "{made}");
    }
    // A query per role would add at least 9 (a transaction each for 3 more
    // roles); the slack covers a tenant lookup after the 1 s cache expires
    // and a freshly opened pool connection.
    let many = statements().await;
    assert!(
        many <= few + 2,
        "statements grew with roles: {few} -> {many}"
    );
    let admin = app.member(&owner, "acme", "ada", "admin").await;
    let admin_perms = permissions(
        &app.gql()
            .token(&admin.token)
            .send(MY_PERMISSIONS, json!({}))
            .await,
    );
    assert!(admin_perms.contains(&"members:manage".to_owned()));
    assert!(
        !admin_perms.contains(&"billing:read".to_owned()),
        "{admin_perms:?}"
    );
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_write() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    app.create_project(&owner, "existing").await;
    let viewer = app.member(&owner, "acme", "vera", "viewer").await;
    let read = app
        .gql()
        .token(&viewer.token)
        .send(PROJECTS, json!({}))
        .await;
    assert_eq!(read["data"]["projects"]["totalCount"], 1, "{read}");
    cannot_write(&app, &viewer.token).await;
    let manage = app
        .gql()
        .token(&viewer.token)
        .send(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }",
            json!({ "i": { "email": "x@acme.test", "displayName": "X", "password": "password-123" } }),
        )
        .await;
    assert_eq!(code(&manage), "FORBIDDEN");
    let after = app.gql().token(&owner).send(PROJECTS, json!({})).await;
    assert_eq!(
        after["data"]["projects"]["totalCount"], 1,
        "nothing written"
    );
}

#[tokio::test]
async fn an_expired_role_assignment_stops_granting() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let vera = app.member(&owner, "acme", "vera", "viewer").await;
    let member = role_id(&app, &owner, "member").await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = assign(&app, &owner, &vera.user_id, &member, json!(in_an_hour)).await;
    assert!(body["errors"].is_null(), "{body}");
    let write = app
        .gql()
        .token(&vera.token)
        .send(CREATE_PROJECT, json!({ "n": "ok" }))
        .await;
    assert!(write["errors"].is_null(), "granted while it lasts: {write}");
    // Time passes: the assignment's end moves into the past.
    let mut db = app.db().await;
    db.batch_execute(
        "UPDATE tenant_acme.role_assignments SET expires_at = now() - interval '1 second' \
         WHERE expires_at IS NOT NULL",
    )
    .await
    .unwrap();
    cannot_write(&app, &vera.token).await;
    let me = app
        .gql()
        .token(&vera.token)
        .send("{ me { roles { role { key } expired } } }", json!({}))
        .await;
    let roles = me["data"]["me"]["roles"].as_array().unwrap();
    assert!(
        roles
            .iter()
            .any(|r| r["role"]["key"] == "member" && r["expired"] == true),
        "{me}"
    );
    // A time in the past is refused outright.
    let past = assign(
        &app,
        &owner,
        &vera.user_id,
        &member,
        json!("2020-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(code(&past), "BAD_USER_INPUT");
}

#[tokio::test]
async fn custom_roles_inherit_and_cannot_exceed_their_maker() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let viewer = role_id(&app, &owner, "viewer").await;
    let create = |token: String, key: &'static str, parent: Option<String>, perms: Value| {
        let app = &app;
        async move {
            app.gql()
                .token(&token)
                .send(
                    "mutation($i: CreateRoleInput!) { createRole(input: $i) { role { id key effectivePermissions parent { key } } } }",
                    json!({ "i": { "key": key, "name": key, "parentId": parent, "permissions": perms } }),
                )
                .await
        }
    };
    let auditor = create(
        owner.clone(),
        "auditor",
        Some(viewer.clone()),
        json!(["audit:read"]),
    )
    .await;
    assert!(auditor["errors"].is_null(), "{auditor}");
    let role = &auditor["data"]["createRole"]["role"];
    assert_eq!(role["parent"]["key"], "viewer");
    assert_eq!(
        role["effectivePermissions"],
        json!(["audit:read", "members:read", "projects:read", "tasks:read"])
    );
    let auditor_id = role["id"].as_str().unwrap().to_owned();
    let pat = app.member(&owner, "acme", "pat", "viewer").await;
    let body = assign(&app, &owner, &pat.user_id, &auditor_id, Value::Null).await;
    assert!(body["errors"].is_null(), "{body}");
    let perms = permissions(
        &app.gql()
            .token(&pat.token)
            .send(MY_PERMISSIONS, json!({}))
            .await,
    );
    assert!(perms.contains(&"audit:read".to_owned()), "{perms:?}");
    let events = app
        .gql()
        .token(&pat.token)
        .send(
            "{ auditEvents(first: 50) { edges { node { action actorKind } } } }",
            json!({}),
        )
        .await;
    assert!(
        events["errors"].is_null(),
        "the inherited role reads the audit trail: {events}"
    );

    // An admin (no billing:read) can neither make a role granting more than
    // they have nor hand out the owner role.
    let ada = app.member(&owner, "acme", "ada", "admin").await;
    let greedy = create(ada.token.clone(), "greedy", None, json!(["billing:read"])).await;
    assert_eq!(code(&greedy), "FORBIDDEN", "{greedy}");
    let owner_role = role_id(&app, &owner, "owner").await;
    let escalate = assign(&app, &ada.token, &ada.user_id, &owner_role, Value::Null).await;
    assert_eq!(code(&escalate), "FORBIDDEN", "{escalate}");
    // Unknown permissions, taken keys and cycles are refused.
    let unknown = create(owner.clone(), "odd", None, json!(["rockets:launch"])).await;
    assert_eq!(code(&unknown), "BAD_USER_INPUT");
    let taken = create(owner.clone(), "auditor", None, json!([])).await;
    assert_eq!(code(&taken), "CONFLICT");
    let child = create(owner.clone(), "junior", Some(auditor_id.clone()), json!([])).await;
    let child_id = child["data"]["createRole"]["role"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cycle = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: UpdateRoleInput!) { updateRole(input: $i) { role { id } } }",
            json!({ "i": { "id": auditor_id, "name": "auditor", "parentId": child_id, "permissions": [] } }),
        )
        .await;
    assert_eq!(code(&cycle), "BAD_USER_INPUT", "{cycle}");
    let builtin = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: UpdateRoleInput!) { updateRole(input: $i) { role { id } } }",
            json!({ "i": { "id": viewer, "name": "viewer", "permissions": ["billing:read"] } }),
        )
        .await;
    assert_eq!(
        code(&builtin),
        "BAD_USER_INPUT",
        "built-in roles stay as seeded"
    );
    let in_use = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: DeleteRoleInput!) { deleteRole(input: $i) { deletedRoleId } }",
            json!({ "i": { "id": auditor_id } }),
        )
        .await;
    assert_eq!(code(&in_use), "CONFLICT", "held and inherited: {in_use}");
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed_demoted_or_disabled() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let me = app
        .gql()
        .token(&owner)
        .send("{ me { id } }", json!({}))
        .await;
    let owner_id = me["data"]["me"]["id"].as_str().unwrap().to_owned();
    let owner_role = role_id(&app, &owner, "owner").await;
    let demote = unassign(&app, &owner, &owner_id, &owner_role).await;
    assert_eq!(code(&demote), "CONFLICT", "{demote}");
    let expire = assign(
        &app,
        &owner,
        &owner_id,
        &owner_role,
        json!((chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()),
    )
    .await;
    assert_eq!(
        code(&expire),
        "CONFLICT",
        "an end date on the last owner: {expire}"
    );
    let disable = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: UserIdInput!) { disableUser(input: $i) { user { id } } }",
            json!({ "i": { "id": owner_id } }),
        )
        .await;
    assert_eq!(code(&disable), "CONFLICT", "{disable}");

    // With two owners, two demotions at once: exactly one goes through.
    let second = app.member(&owner, "acme", "sam", "owner").await;
    let (a, b) = futures::future::join(
        unassign(&app, &owner, &owner_id, &owner_role),
        unassign(&app, &second.token, &second.user_id, &owner_role),
    )
    .await;
    let codes = [code(&a), code(&b)];
    assert_eq!(
        codes.iter().filter(|c| c.is_empty()).count(),
        1,
        "one demotion succeeds, one is refused: {a} {b}"
    );
    assert!(
        codes.contains(&"CONFLICT") || codes.contains(&"FORBIDDEN"),
        "{codes:?}"
    );
    let mut db = app.db().await;
    let owners = crate::common::count(
        &mut db,
        "SELECT count(*) AS n FROM tenant_acme.role_assignments a \
         JOIN tenant_acme.roles r ON r.id = a.role_id WHERE r.key = 'owner'",
    )
    .await;
    assert_eq!(owners, 1);
}

async fn create_key(app: &TestApp, token: &str, perms: Value) -> Value {
    app.gql()
        .token(token)
        .send(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id prefix permissions } } }",
            json!({ "i": { "name": "ci", "permissions": perms } }),
        )
        .await
}

/// The secret `createApiKey` returned.
fn secret_of(made: &Value) -> String {
    made["data"]["createApiKey"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned()
}

#[tokio::test]
async fn an_api_key_acts_as_its_owner_within_its_permissions() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    app.create_project(&owner, "p").await;
    let made = create_key(&app, &owner, json!(["projects:read"])).await;
    let secret = secret_of(&made);
    let prefix = made["data"]["createApiKey"]["apiKey"]["prefix"]
        .as_str()
        .unwrap();
    assert!(
        secret.starts_with(prefix) && secret.starts_with("sk.acme."),
        "{secret} {prefix}"
    );
    // The key names its tenant: no X-Tenant needed.
    let read = app.gql().token(&secret).send(PROJECTS, json!({})).await;
    assert_eq!(read["data"]["projects"]["totalCount"], 1, "{read}");
    let me = app
        .gql()
        .token(&secret)
        .send("{ me { email } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["email"], "owner@acme.test");
    cannot_write(&app, &secret).await; // beyond the key
    // Only its hash is stored.
    let mut db = app.db().await;
    let stored = crate::common::count(
        &mut db,
        &format!(
            "SELECT count(*) AS n FROM tenant_acme.api_keys WHERE position('{}' in encode(secret_hash, 'escape')) > 0",
            secret.rsplit('.').next().unwrap()
        ),
    )
    .await;
    assert_eq!(stored, 0);
    // A tampered secret, another tenant, the admin API: all refused.
    let tampered = format!("{}x", secret);
    let bad = app.gql().token(&tampered).send(PROJECTS, json!({})).await;
    assert_eq!(code(&bad), "UNAUTHENTICATED");
    app.tenant_with_owner("globex", "enterprise").await;
    let elsewhere = app
        .gql()
        .token(&secret)
        .tenant("globex")
        .send(PROJECTS, json!({}))
        .await;
    assert_eq!(code(&elsewhere), "TENANT_MISMATCH", "{elsewhere}");
    let admin_op = app
        .gql()
        .token(&secret)
        .send("{ tenants(first: 5) { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&admin_op), "FORBIDDEN");
}

/// Noting a key's use never makes a request wait for another request's
/// transaction (here: one holding the key's row lock as long as it likes).
#[tokio::test]
async fn a_key_in_use_elsewhere_does_not_hold_up_a_request() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    app.create_project(&owner, "p").await;
    let made = create_key(&app, &owner, json!(["projects:read"])).await;
    let secret = secret_of(&made);
    let mut db = app.db().await;
    db.batch_execute("BEGIN; SELECT 1 FROM tenant_acme.api_keys FOR UPDATE")
        .await
        .unwrap();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.gql().token(&secret).send(PROJECTS, json!({})),
    )
    .await
    .expect("the request waited on the key's row lock");
    assert_eq!(read["data"]["projects"]["totalCount"], 1, "{read}");
    db.batch_execute("COMMIT").await.unwrap();
    // Once the row is free, the use is noted.
    app.gql().token(&secret).send(PROJECTS, json!({})).await;
    let noted = crate::common::count(
        &mut db,
        "SELECT count(*) AS n FROM tenant_acme.api_keys WHERE last_used_at IS NOT NULL",
    )
    .await;
    assert_eq!(noted, 1);
}

#[tokio::test]
async fn an_api_key_never_exceeds_its_owner_and_revocation_is_immediate() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let mia = app.member(&owner, "acme", "mia", "member").await;
    let too_much = create_key(&app, &mia.token, json!(["members:manage"])).await;
    assert_eq!(code(&too_much), "FORBIDDEN", "{too_much}");
    let made = create_key(&app, &mia.token, json!(["projects:read", "projects:write"])).await;
    let secret = secret_of(&made);
    let key_id = made["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let write = app
        .gql()
        .token(&secret)
        .send(CREATE_PROJECT, json!({ "n": "by key" }))
        .await;
    assert!(write["errors"].is_null(), "{write}");
    // Mia is demoted to viewer: her key loses what she lost, at once.
    let member = role_id(&app, &owner, "member").await;
    let viewer = role_id(&app, &owner, "viewer").await;
    assert!(assign(&app, &owner, &mia.user_id, &viewer, Value::Null).await["errors"].is_null());
    assert!(unassign(&app, &owner, &mia.user_id, &member).await["errors"].is_null());
    cannot_write(&app, &secret).await;
    let perms = permissions(
        &app.gql()
            .token(&secret)
            .send(MY_PERMISSIONS, json!({}))
            .await,
    );
    assert_eq!(perms, vec!["projects:read"]);
    // Revoked: the very next request fails.
    let revoke = app
        .gql()
        .token(&mia.token)
        .send(
            "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { revokedAt } } }",
            json!({ "i": { "id": key_id } }),
        )
        .await;
    assert!(revoke["errors"].is_null(), "{revoke}");
    let read = app.gql().token(&secret).send(PROJECTS, json!({})).await;
    assert_eq!(code(&read), "UNAUTHENTICATED", "{read}");
    // Listing shows the key, never its secret.
    let list = app
        .gql()
        .token(&mia.token)
        .send("{ apiKeys { id name prefix revokedAt } }", json!({}))
        .await;
    assert_eq!(list["data"]["apiKeys"].as_array().unwrap().len(), 1);
    assert!(
        !list
            .to_string()
            .contains(secret.rsplit('.').next().unwrap())
    );
}

#[tokio::test]
async fn platform_operations_refuse_tenant_credentials() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    for op in [
        "{ tenants(first: 5) { totalCount } }",
        "{ plans { code } }",
        "{ tenant(slug: \"acme\") { id } }",
    ] {
        let body = app.gql().token(&owner).send(op, json!({})).await;
        assert_eq!(code(&body), "FORBIDDEN", "{op}: {body}");
    }
    let create = app
        .gql()
        .token(&owner)
        .send(
            crate::common::CREATE_TENANT,
            json!({ "input": { "slug": "evil", "name": "Evil", "plan": "free",
                "owner": { "email": "a@evil.test", "password": "password-123", "displayName": "E" } } }),
        )
        .await;
    assert_eq!(code(&create), "FORBIDDEN");
}

#[tokio::test]
async fn temporary_access_cannot_be_made_permanent_or_passed_on() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let bob = app.member(&owner, "acme", "bob", "member").await;
    let admin = role_id(&app, &owner, "admin").await;
    let friday = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    assert!(assign(&app, &owner, &bob.user_id, &admin, json!(friday)).await["errors"].is_null());
    // Bob can administer until Friday...
    let perms = permissions(
        &app.gql()
            .token(&bob.token)
            .send(MY_PERMISSIONS, json!({}))
            .await,
    );
    assert!(perms.contains(&"members:manage".to_owned()));
    // ...but cannot drop the end date, nor hand the role to anyone for good.
    let forever = assign(&app, &bob.token, &bob.user_id, &admin, Value::Null).await;
    assert_eq!(code(&forever), "FORBIDDEN", "{forever}");
    let friend = app
        .gql()
        .token(&bob.token)
        .send(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }",
            json!({ "i": { "email": "pal@acme.test", "displayName": "Pal", "password": "password-123", "role": "admin" } }),
        )
        .await;
    assert_eq!(code(&friend), "FORBIDDEN", "{friend}");
    // What he holds permanently he may still give.
    let member = app
        .gql()
        .token(&bob.token)
        .send(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }",
            json!({ "i": { "email": "pal@acme.test", "displayName": "Pal", "password": "password-123", "role": "member" } }),
        )
        .await;
    assert!(member["errors"].is_null(), "{member}");
}

#[tokio::test]
async fn a_disabled_owner_cannot_be_brought_back_by_an_admin() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let second = app.member(&owner, "acme", "sam", "owner").await;
    let ada = app.member(&owner, "acme", "ada", "admin").await;
    let toggle = |token: String, op: &'static str, id: String| {
        let app = &app;
        async move {
            app.gql()
                .token(&token)
                .send(
                    &format!(
                        "mutation($i: UserIdInput!) {{ {op}(input: $i) {{ user {{ id }} }} }}"
                    ),
                    json!({ "i": { "id": id } }),
                )
                .await
        }
    };
    assert!(toggle(owner.clone(), "disableUser", second.user_id.clone()).await["errors"].is_null());
    let back = toggle(ada.token.clone(), "enableUser", second.user_id.clone()).await;
    assert_eq!(code(&back), "FORBIDDEN", "{back}");
    let rename = app
        .gql()
        .token(&ada.token)
        .send(
            "mutation($i: UpdateUserInput!) { updateUser(input: $i) { user { id } } }",
            json!({ "i": { "id": second.user_id, "email": "ada-owns-this@acme.test" } }),
        )
        .await;
    assert_eq!(code(&rename), "FORBIDDEN", "{rename}");
}

#[tokio::test]
async fn an_api_key_cannot_breed_keys_or_act_on_its_owners_account() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let made = create_key(
        &app,
        &owner,
        json!(["projects:read", "apikeys:create", "tasks:read"]),
    )
    .await;
    let key = secret_of(&made);
    let child = create_key(&app, &key, json!(["projects:read"])).await;
    assert_eq!(code(&child), "FORBIDDEN", "{child}");
    let me = app.gql().token(&key).send("{ me { id } }", json!({})).await;
    let owner_id = me["data"]["me"]["id"].as_str().unwrap().to_owned();
    let rename = app
        .gql()
        .token(&key)
        .send(
            "mutation($i: UpdateUserInput!) { updateUser(input: $i) { user { id } } }",
            json!({ "i": { "id": owner_id, "email": "stolen@evil.test" } }),
        )
        .await;
    assert_eq!(code(&rename), "FORBIDDEN", "{rename}");
    let sessions = app
        .gql()
        .token(&key)
        .send("{ mySessions { id } }", json!({}))
        .await;
    assert_eq!(code(&sessions), "FORBIDDEN", "{sessions}");
    // Without members:read, a task's assignee (a user) stays hidden.
    let p = app.create_project(&owner, "p").await;
    let task = json!({ "projectId": p, "title": "t", "assigneeId": owner_id });
    app.create_task(&owner, task).await;
    let peek = app
        .gql()
        .token(&key)
        .send(
            "{ tasks(first: 5) { edges { node { title assignee { email } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&peek), "FORBIDDEN", "{peek}");
    assert_eq!(
        peek["data"]["tasks"]["edges"][0]["node"]["title"], "t",
        "the task itself is readable"
    );
}

#[tokio::test]
async fn changing_a_role_needs_rights_over_every_role_inheriting_from_it() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let base = app
        .gql()
        .token(&owner)
        .send(
            "mutation { createRole(input: {key: \"base\", name: \"Base\", permissions: [\"projects:read\"]}) { role { id } } }",
            json!({}),
        )
        .await;
    let base_id = base["data"]["createRole"]["role"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{base}"))
        .to_owned();
    let rich = app
        .gql()
        .token(&owner)
        .send(
            "mutation($p: ID) { createRole(input: {key: \"rich\", name: \"Rich\", parentId: $p, permissions: [\"billing:read\"]}) { role { id } } }",
            json!({ "p": base_id }),
        )
        .await;
    assert!(rich["errors"].is_null(), "{rich}");
    let ada = app.member(&owner, "acme", "ada", "admin").await;
    let change = app
        .gql()
        .token(&ada.token)
        .send(
            "mutation($i: UpdateRoleInput!) { updateRole(input: $i) { role { id } } }",
            json!({ "i": { "id": base_id, "name": "Base", "permissions": [] } }),
        )
        .await;
    assert_eq!(code(&change), "FORBIDDEN", "{change}");
    // A role offered by an open invitation is not deleted from under it.
    let invite = app
        .gql()
        .token(&owner)
        .send(
            "mutation { inviteUser(input: {email: \"x@acme.test\", role: \"rich\"}) { token } }",
            json!({}),
        )
        .await;
    assert!(invite["errors"].is_null(), "{invite}");
    let rich_id = role_id(&app, &owner, "rich").await;
    let delete = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: DeleteRoleInput!) { deleteRole(input: $i) { deletedRoleId } }",
            json!({ "i": { "id": rich_id } }),
        )
        .await;
    assert_eq!(code(&delete), "CONFLICT", "{delete}");
}

// Permissions reused between requests (the grant cache): each request reads
// its tenant's access version, and permissions are reused only at the
// version just read. These make the changes by hand, in SQL, as another
// server or an operator would: nothing passes through this server's cache.

/// `myPermissions` as `token`, sorted.
async fn my_permissions(app: &TestApp, token: &str) -> Vec<String> {
    let mut mine = permissions(&app.gql().token(token).send(MY_PERMISSIONS, json!({})).await);
    mine.sort();
    mine
}

/// A tenant `slug` whose owner added vera as a viewer: the app, the owner's
/// token, vera, and her permissions then.
async fn with_viewer(slug: &str) -> (TestApp, String, crate::common::SignedIn, Vec<String>) {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner(slug, "enterprise").await;
    let vera = app.member(&owner, slug, "vera", "viewer").await;
    let viewer = my_permissions(&app, &vera.token).await;
    (app, owner, vera, viewer)
}

/// Removes every role `user` holds in `schema`, by hand.
async fn unassign_all(app: &TestApp, schema: &str, user: &str) {
    app.db()
        .await
        .batch_execute(&format!(
            "DELETE FROM {schema}.role_assignments WHERE user_id = '{user}'"
        ))
        .await
        .unwrap();
}

/// Asserts that `token` may not create a project: `FORBIDDEN`.
async fn cannot_write(app: &TestApp, token: &str) {
    let write = app
        .gql()
        .token(token)
        .send(CREATE_PROJECT, json!({ "n": "refused" }))
        .await;
    assert_eq!(code(&write), "FORBIDDEN", "{write}");
}

/// Whether `token`'s `myPermissions` holds `permission`.
async fn holds(app: &TestApp, token: &str, permission: &str) -> bool {
    my_permissions(app, token)
        .await
        .iter()
        .any(|p| p == permission)
}

/// Gives the `viewer` role in `schema` `permission`, by hand.
async fn grant_viewer(app: &TestApp, schema: &str, permission: &str) {
    app.db()
        .await
        .batch_execute(&format!(
            "INSERT INTO {schema}.role_permissions (role_id, permission) \
             SELECT id, '{permission}' FROM {schema}.roles WHERE key = 'viewer'"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn reused_permissions_follow_every_role_change_made_anywhere() {
    let (app, _owner, vera, viewer) = with_viewer("acme").await;
    assert_eq!(viewer, ["members:read", "projects:read", "tasks:read"]);
    let mut db = app.db().await;

    // A permission given to her role.
    grant_viewer(&app, "tenant_acme", "projects:write").await;
    assert!(holds(&app, &vera.token, "projects:write").await);
    // A mutation sees it too (`create_project` fails the test otherwise).
    app.create_project(&vera.token, "a").await;

    // ... and taken away again.
    db.batch_execute("DELETE FROM tenant_acme.role_permissions WHERE permission = 'projects:write' AND role_id = (SELECT id FROM tenant_acme.roles WHERE key = 'viewer')")
        .await
        .unwrap();
    assert_eq!(my_permissions(&app, &vera.token).await, viewer);
    cannot_write(&app, &vera.token).await;

    // Her role made to inherit from another: she gains what it holds.
    db.batch_execute(
        "UPDATE tenant_acme.roles SET parent_id = (SELECT id FROM tenant_acme.roles WHERE key = 'admin') \
         WHERE key = 'viewer'; \
         UPDATE tenant_acme.roles SET parent_id = NULL WHERE key = 'member'",
    )
    .await
    .unwrap();
    assert!(holds(&app, &vera.token, "audit:read").await);

    // Her assignment removed: nothing left.
    unassign_all(&app, "tenant_acme", &vera.user_id).await;
    assert!(my_permissions(&app, &vera.token).await.is_empty());
    let read = app.gql().token(&vera.token).send(PROJECTS, json!({})).await;
    assert_eq!(code(&read), "FORBIDDEN", "{read}");
}

#[tokio::test]
async fn an_uncommitted_or_rolled_back_role_change_grants_nothing() {
    let (app, _owner, vera, viewer) = with_viewer("acme").await;
    let grant = "INSERT INTO tenant_acme.role_permissions (role_id, permission) \
                 SELECT id, 'audit:read' FROM tenant_acme.roles WHERE key = 'viewer'";

    // Rolled back: never seen, and what a request cached before stays right.
    let mut db = app.db().await;
    db.batch_execute(&format!("BEGIN; {grant}; ROLLBACK"))
        .await
        .unwrap();
    assert_eq!(my_permissions(&app, &vera.token).await, viewer);

    // Open: not seen while it is open (its version is not either) ...
    db.batch_execute(&format!("BEGIN; {grant}")).await.unwrap();
    assert_eq!(my_permissions(&app, &vera.token).await, viewer);
    let audit = app
        .gql()
        .token(&vera.token)
        .send("{ auditEvents(first: 1) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(code(&audit), "FORBIDDEN", "{audit}");
    // ... and seen by the first request after it commits.
    db.batch_execute("COMMIT").await.unwrap();
    assert!(holds(&app, &vera.token, "audit:read").await);
}

#[tokio::test]
async fn an_assignment_ending_between_requests_stops_granting_with_no_write() {
    let (app, owner, vera, _) = with_viewer("acme").await;
    let member = role_id(&app, &owner, "member").await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let body = assign(
        &app,
        &owner,
        &vera.user_id,
        &member,
        json!(soon.to_rfc3339()),
    )
    .await;
    assert!(body["errors"].is_null(), "{body}");
    // Granted while it lasts (`create_project` fails the test otherwise).
    app.create_project(&vera.token, "ok").await;
    assert!(holds(&app, &vera.token, "projects:write").await);
    // Nothing is written: the assignment simply ends.
    let left = soon - chrono::Utc::now() + chrono::Duration::milliseconds(500);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    assert!(!holds(&app, &vera.token, "projects:write").await);
    cannot_write(&app, &vera.token).await;
}

#[tokio::test]
async fn a_clones_role_changes_never_reach_the_tenant_it_was_cloned_from() {
    let (app, _owner, vera, viewer) = with_viewer("alpha").await;
    let made = app
        .gql()
        .admin()
        .send(
            "mutation($i: CloneTenantInput!) { cloneTenant(input: $i) { tenant { slug } } }",
            json!({ "i": { "from": "alpha", "to": "beta" } }),
        )
        .await;
    assert!(made["errors"].is_null(), "{made}");
    // The same user and the same roles in both (the clone's access version is its own:
    // copying its roles in replaced it).
    let vera_beta = app
        .login("beta", "vera@alpha.test", "password-123")
        .await
        .unwrap();
    assert_eq!(my_permissions(&app, &vera_beta).await, viewer);
    grant_viewer(&app, "tenant_beta", "audit:read").await;
    assert!(holds(&app, &vera_beta, "audit:read").await);
    assert_eq!(
        my_permissions(&app, &vera.token).await,
        viewer,
        "alpha keeps its own"
    );
    // And the other way round.
    unassign_all(&app, "tenant_alpha", &vera.user_id).await;
    assert!(my_permissions(&app, &vera.token).await.is_empty());
    assert!(holds(&app, &vera_beta, "audit:read").await);
}
