//! Export, import and clone: the new tenant holds the same data, its users
//! sign in, it has a role of its own, and no credential of the source
//! works on it.

use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use serde_json::json;
use strata::tenancy::conn::TenantTx;
use strata::tenancy::doctor;
use strata::tenancy::template::TEMPLATE;
use strata::tenancy::transfer;

use crate::common::{TestApp, code, count};

/// Tables whose rows a copy holds unchanged.
const SAME: &[&str] = &[
    "users",
    "projects",
    "tasks",
    "roles",
    "role_permissions",
    "role_assignments",
    "teams",
    "team_members",
];

/// A tenant with a bit of everything; returns the owner's token and an API
/// key's secret.
async fn populated(app: &TestApp, slug: &str) -> (String, String) {
    let owner = app.tenant_with_owner(slug, "professional").await;
    let vera = app.member(&owner, slug, "vera", "viewer").await;
    let project = app
        .create_project(&owner, "Intake: «ünïcode» 'quoted'")
        .await;
    for title in ["first", "second", "third"] {
        let task = json!({ "projectId": project, "title": title, "assigneeId": vera.user_id });
        app.create_task(&owner, task).await;
    }
    let parent = app
        .gql()
        .token(&owner)
        .send(
            "mutation { createTeam(input: { name: \"Clinic\" }) { team { id } } }",
            json!({}),
        )
        .await;
    let parent = parent["data"]["createTeam"]["team"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = app
        .gql()
        .token(&owner)
        .send(
            "mutation($p: ID!) { createTeam(input: { name: \"Nurses\", parentId: $p }) { team { id } } }",
            json!({ "p": parent }),
        )
        .await;
    let child = child["data"]["createTeam"]["team"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = app
        .gql()
        .token(&owner)
        .send(
            "mutation($t: ID!, $u: ID!) { addTeamMember(input: { teamId: $t, userId: $u }) { team { id } } }",
            json!({ "t": child, "u": vera.user_id }),
        )
        .await;
    assert!(added["errors"].is_null(), "{added}");
    let key = app
        .gql()
        .token(&owner)
        .send(
            "mutation { createApiKey(input: { name: \"ci\", permissions: [\"projects:read\"] }) { secret } }",
            json!({}),
        )
        .await;
    let key = key["data"]["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let invited = app
        .gql()
        .token(&owner)
        .send(
            "mutation { inviteUser(input: { email: \"new@x.test\" }) { token } }",
            json!({}),
        )
        .await;
    assert!(invited["errors"].is_null(), "{invited}");
    (owner, key)
}

/// Every row of `schema.table` as JSON text, sorted.
async fn rows(db: &mut AsyncPgConnection, schema: &str, table: &str) -> String {
    #[derive(QueryableByName)]
    struct All {
        #[diesel(sql_type = Nullable<Text>)]
        all: Option<String>,
    }
    diesel::sql_query(format!(
        "SELECT string_agg(r, E'\\n' ORDER BY r) AS all \
         FROM (SELECT row_to_json(x)::text AS r FROM {schema}.{table} x) s"
    ))
    .get_result::<All>(db)
    .await
    .unwrap()
    .all
    .unwrap_or_default()
}

/// The copy holds the source's data, its users sign in, and nothing of the
/// source's credentials works on it.
async fn assert_faithful_copy(app: &TestApp, from: &str, to: &str, key: &str) {
    let mut db = app.db().await;
    for table in SAME {
        let (a, b) = (
            rows(&mut db, &format!("tenant_{from}"), table).await,
            rows(&mut db, &format!("tenant_{to}"), table).await,
        );
        assert!(!a.is_empty(), "{table} is empty in {from}");
        assert_eq!(a, b, "{table} differs");
    }
    let open = |schema: String| {
        format!(
            "SELECT (SELECT count(*) FROM {schema}.api_keys WHERE revoked_at IS NULL) \
                  + (SELECT count(*) FROM {schema}.sessions WHERE revoked_at IS NULL) \
                  + (SELECT count(*) FROM {schema}.refresh_tokens) \
                  + (SELECT count(*) FROM {schema}.invitations WHERE revoked_at IS NULL AND accepted_at IS NULL) AS n"
        )
    };
    assert!(count(&mut db, &open(format!("tenant_{from}"))).await >= 4);
    assert_eq!(count(&mut db, &open(format!("tenant_{to}"))).await, 0);
    assert_eq!(
        count(
            &mut db,
            &format!("SELECT count(*) AS n FROM tenant_{to}.api_keys")
        )
        .await,
        1,
        "the key's record is kept, revoked"
    );

    // Users sign in with the passwords they had.
    app.app.tenants.clear();
    let owner = app
        .login(to, &format!("owner@{from}.test"), "password-123")
        .await
        .expect("owner signs in to the copy");
    let vera = app
        .login(to, &format!("vera@{from}.test"), "password-123")
        .await
        .expect("member signs in to the copy");
    let seen = app
        .gql()
        .token(&vera)
        .send("{ projects(first: 5) { totalCount edges { node { name tasks(first: 5) { totalCount } } } } }", json!({}))
        .await;
    assert_eq!(seen["data"]["projects"]["totalCount"], 1, "{seen}");
    assert_eq!(
        seen["data"]["projects"]["edges"][0]["node"]["name"],
        "Intake: «ünïcode» 'quoted'"
    );
    assert_eq!(
        seen["data"]["projects"]["edges"][0]["node"]["tasks"]["totalCount"],
        3
    );
    // The copy's token is for the copy only.
    let cross = app
        .gql()
        .token(&owner)
        .tenant(from)
        .send("{ projects(first: 1) { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&cross), "TENANT_MISMATCH", "{cross}");
    // The source's key, even renamed for the copy, does not open it.
    let renamed = key.replacen(&format!("sk.{from}."), &format!("sk.{to}."), 1);
    assert_ne!(renamed, key);
    let with_key = app
        .gql()
        .token(&renamed)
        .send("{ projects(first: 1) { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&with_key), "UNAUTHENTICATED", "{with_key}");
    let source_key = app
        .gql()
        .token(key)
        .send("{ projects(first: 1) { totalCount } }", json!({}))
        .await;
    assert_eq!(
        source_key["data"]["projects"]["totalCount"], 1,
        "{source_key}"
    );

    // A role of its own, and the database still keeps tenants apart.
    let (a, b) = (app.binding(from).await.role, app.binding(to).await.role);
    assert_ne!(a, b);
    let report = doctor::check(&mut db, TEMPLATE).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

#[tokio::test]
async fn export_then_import_gives_an_equal_tenant_whose_users_sign_in() {
    let app = TestApp::spawn().await;
    let (_, key) = populated(&app, "alpha").await;
    let mut file = Vec::new();
    let exported = transfer::export(
        &app.app.pool,
        TEMPLATE,
        "alpha",
        &mut file,
        "test",
        "memory",
    )
    .await
    .unwrap();
    assert_eq!(exported.tenant.slug, "alpha");
    let users = exported.rows.iter().find(|(t, _)| t == "users").unwrap().1;
    assert_eq!(users, 2);

    let imported = transfer::import(
        &app.app.pool,
        TEMPLATE,
        &mut file.as_slice(),
        "memory",
        "alpha_copy",
        None,
        "test",
    )
    .await
    .unwrap();
    assert_eq!(imported.tenant.name, "alpha Inc");
    assert_eq!(imported.tenant.plan_code, "professional");
    assert_eq!(imported.tenant.template_version, TEMPLATE.len() as i32);
    assert_faithful_copy(&app, "alpha", "alpha_copy", &key).await;

    let mut db = app.db().await;
    let events = |slug: &str, action: &str| {
        format!(
            "SELECT count(*) AS n FROM management.tenant_events WHERE slug = '{slug}' AND action = '{action}'"
        )
    };
    assert_eq!(count(&mut db, &events("alpha", "exported")).await, 1);
    assert_eq!(count(&mut db, &events("alpha_copy", "imported")).await, 1);
    // The copy's own audit trail says where it came from.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM tenant_alpha_copy.audit_events WHERE action = 'tenant.imported'"
        )
        .await,
        1
    );
}

/// What a failed import must leave: nothing at all under that slug.
async fn assert_nothing_made(app: &TestApp, slug: &str) {
    let mut db = app.db().await;
    let made = format!(
        "SELECT (SELECT count(*) FROM management.tenants WHERE slug = '{slug}') \
              + (SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_{slug}') \
              + (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant\\_{slug}\\_%') AS n"
    );
    assert_eq!(
        count(&mut db, &made).await,
        0,
        "something of {slug} was left"
    );
}

#[tokio::test]
async fn a_cut_damaged_or_foreign_file_creates_nothing() {
    let app = TestApp::spawn().await;
    populated(&app, "alpha").await;
    let mut file = Vec::new();
    transfer::export(
        &app.app.pool,
        TEMPLATE,
        "alpha",
        &mut file,
        "test",
        "memory",
    )
    .await
    .unwrap();
    let text = String::from_utf8(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let import = |body: String, slug: &'static str| {
        let pool = app.app.pool.clone();
        async move {
            transfer::import(
                &pool,
                TEMPLATE,
                &mut body.as_bytes(),
                "f",
                slug,
                None,
                "test",
            )
            .await
            .map(|_| ())
            .map_err(|e| (e.code(), e.to_string()))
        }
    };

    // Cut before the end line.
    let cut = lines[..lines.len() - 1].join("\n");
    let (c, message) = import(cut, "cut").await.unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert!(message.contains("truncated"), "{message}");
    assert_nothing_made(&app, "cut").await;

    // A row lost in the middle.
    let mut lost = lines.clone();
    lost.remove(3);
    let (c, message) = import(lost.join("\n"), "lost").await.unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert!(message.contains("damaged"), "{message}");
    assert_nothing_made(&app, "lost").await;

    // A row that breaks a reference (a task pointing at no project).
    let mut broken = lines.clone();
    let task = broken
        .iter()
        .position(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["table"] == "tasks")
        .unwrap();
    let project_id =
        serde_json::from_str::<serde_json::Value>(broken[task]).unwrap()["row"]["project_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let bad = broken[task].replace(&project_id, "00000000-0000-0000-0000-000000000000");
    broken[task] = &bad;
    let (c, _) = import(broken.join("\n"), "broken").await.unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert_nothing_made(&app, "broken").await;

    // From a newer server.
    let mut header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    header["header"]["template_version"] = json!(TEMPLATE.len() + 1);
    let newer = [header.to_string()]
        .into_iter()
        .chain(lines[1..].iter().map(|l| (*l).to_owned()))
        .collect::<Vec<_>>()
        .join("\n");
    let (c, message) = import(newer, "newer").await.unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert!(message.contains("newer"), "{message}");
    assert_nothing_made(&app, "newer").await;

    // Two files run together, or anything after the end line.
    let joined = format!("{text}\n{}", lines[1]);
    let (c, message) = import(joined, "joined").await.unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert!(message.contains("after the end line"), "{message}");
    assert_nothing_made(&app, "joined").await;

    // Not an export at all.
    let (c, _) = import("{\"hello\": 1}\n".to_owned(), "junk")
        .await
        .unwrap_err();
    assert_eq!(c, "BAD_USER_INPUT");
    assert_nothing_made(&app, "junk").await;

    // Onto a slug that is taken: refused, and alpha is untouched.
    let mut db = app.db().await;
    let before = rows(&mut db, "tenant_alpha", "tasks").await;
    let (c, _) = import(text.clone(), "alpha").await.unwrap_err();
    assert_eq!(c, "CONFLICT");
    assert_eq!(rows(&mut db, "tenant_alpha", "tasks").await, before);

    // The whole file still imports.
    import(text, "whole").await.unwrap();
}

#[tokio::test]
async fn clone_tenant_copies_inside_the_database() {
    let app = TestApp::spawn().await;
    let (owner, key) = populated(&app, "alpha").await;
    let clone = "mutation($i: CloneTenantInput!) { cloneTenant(input: $i) { rowsCopied tenant { slug name status templateVersion plan { code } } } }";

    // Platform admin only.
    let denied = app
        .gql()
        .token(&owner)
        .send(clone, json!({ "i": { "from": "alpha", "to": "sneaky" } }))
        .await;
    assert_eq!(code(&denied), "FORBIDDEN", "{denied}");
    assert_nothing_made(&app, "sneaky").await;

    let made = app
        .gql()
        .admin()
        .send(
            clone,
            json!({ "i": { "from": "alpha", "to": "beta", "name": "Beta Clinic" } }),
        )
        .await;
    assert!(made["errors"].is_null(), "{made}");
    let payload = &made["data"]["cloneTenant"];
    assert_eq!(payload["tenant"]["name"], "Beta Clinic");
    assert_eq!(payload["tenant"]["status"], "ACTIVE");
    assert_eq!(payload["tenant"]["plan"]["code"], "professional");
    assert!(payload["rowsCopied"].as_i64().unwrap() > 10, "{made}");
    assert_faithful_copy(&app, "alpha", "beta", &key).await;

    // The clone's role cannot read the source.
    let bind = app.binding("beta").await;
    let mut tx = TenantTx::begin(&app.app.pool, &bind).await.unwrap();
    let err = tx
        .conn()
        .batch_execute("SELECT count(*) FROM tenant_alpha.projects")
        .await
        .expect_err("the clone's role reads the source")
        .to_string();
    assert!(err.contains("permission denied"), "{err}");
    let rolled_back =
        strata::error::AppError::internal(anyhow::anyhow!("refused, as it should be"));
    let _ = tx.finish::<()>(Err(rolled_back)).await;

    // Taken slug, unknown or deleted source.
    for (input, expected) in [
        (json!({ "from": "alpha", "to": "beta" }), "CONFLICT"),
        (json!({ "from": "nobody", "to": "gamma" }), "NOT_FOUND"),
        (
            json!({ "from": "alpha", "to": "Bad Slug" }),
            "BAD_USER_INPUT",
        ),
    ] {
        let body = app.gql().admin().send(clone, json!({ "i": input })).await;
        assert_eq!(code(&body), expected, "{input}: {body}");
    }
    let deleted = app
        .gql()
        .admin()
        .send(
            "mutation { deleteTenant(input: { slug: \"alpha\", reason: \"test\" }) { tenant { status } } }",
            json!({}),
        )
        .await;
    assert!(deleted["errors"].is_null(), "{deleted}");
    let body = app
        .gql()
        .admin()
        .send(clone, json!({ "i": { "from": "alpha", "to": "gamma" } }))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    assert_nothing_made(&app, "gamma").await;
}

#[tokio::test]
async fn concurrent_clones_to_one_slug_make_exactly_one_tenant() {
    let app = TestApp::spawn().await;
    populated(&app, "alpha").await;
    let attempts = (0..4).map(|_| {
        let pool = app.app.pool.clone();
        async move { transfer::clone_tenant(&pool, TEMPLATE, "alpha", "twin", None, "test").await }
    });
    let results = futures::future::join_all(attempts).await;
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), "CONFLICT", "{r:?}");
    }
    let mut db = app.db().await;
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE 'tenant\\_twin\\_%'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn cli_export_and_import_through_the_binary() {
    let app = TestApp::spawn().await;
    populated(&app, "alpha").await;
    let dir = tempfile_dir();
    let out = dir.join("alpha.jsonl");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .env("DATABASE_URL", &app.url)
            .env("STRATA_DATA_DIR", &dir)
            .output()
            .unwrap()
    };
    let exported = run(&["tenants", "export", "alpha", "--out", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    assert!(out.exists());
    assert!(!dir.join("alpha.jsonl.partial").exists());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export is readable by its owner only");
    // An export never replaces a file.
    let before = std::fs::read(&out).unwrap();
    let again = run(&["tenants", "export", "alpha", "--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);

    let missing = run(&[
        "tenants",
        "export",
        "nobody",
        "--out",
        dir.join("x.jsonl").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(!dir.join("x.jsonl").exists() && !dir.join("x.jsonl.partial").exists());

    let imported = run(&[
        "tenants",
        "import",
        out.to_str().unwrap(),
        "--slug",
        "restored",
    ]);
    assert!(imported.status.success(), "{imported:?}");
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(stdout.contains("created tenant restored"), "{stdout}");
    app.app.tenants.clear();
    app.login("restored", "owner@alpha.test", "password-123")
        .await
        .expect("owner signs in to the imported tenant");

    let again = run(&[
        "tenants",
        "import",
        out.to_str().unwrap(),
        "--slug",
        "restored",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("CONFLICT"),
        "{again:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
