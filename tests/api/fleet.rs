//! Fleet migrations: every tenant to the latest template, one transaction
//! per tenant, and the rule for tenants behind during a rollout.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::json;
use strata::tenancy::fleet::{self, Outcome};
use strata::tenancy::provision::{self, CreateTenant};
use strata::tenancy::template::{TEMPLATE, TemplateStep};

use crate::common::{TestApp, code, count};

/// The built-in template plus one more step.
fn extended(sql: &'static str) -> &'static [TemplateStep] {
    let mut steps = TEMPLATE.to_vec();
    steps.push(TemplateStep {
        version: TEMPLATE.len() as i32 + 1,
        name: "9999_test_step",
        sql,
    });
    Box::leak(steps.into_boxed_slice())
}

/// Creates tenants at the built-in template's version (one behind `extended`).
async fn old_tenants(app: &TestApp, slugs: &[&str]) {
    for slug in slugs {
        provision::create_tenant(
            &app.app.pool,
            TEMPLATE,
            CreateTenant {
                slug: (*slug).into(),
                name: (*slug).into(),
                plan: "free".into(),
                owner_email: format!("owner@{slug}.test"),
                owner_password: "password-123".into(),
                owner_display_name: "Owner".into(),
            },
        )
        .await
        .unwrap();
    }
    app.app.tenants.clear();
}

async fn version(app: &TestApp, slug: &str) -> i64 {
    let mut db = app.db().await;
    count(
        &mut db,
        &format!(
            "SELECT template_version::bigint AS n FROM management.tenants WHERE slug = '{slug}'"
        ),
    )
    .await
}

async fn has_table(app: &TestApp, slug: &str, table: &str) -> bool {
    let mut db = app.db().await;
    count(
        &mut db,
        &format!(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'tenant_{slug}' AND tablename = '{table}'"
        ),
    )
    .await
        == 1
}

#[tokio::test]
async fn one_failing_tenant_stays_whole_and_the_others_advance() {
    let template = extended(
        "DO $$ BEGIN IF current_schema() = 'tenant_bravo' THEN RAISE EXCEPTION 'bravo is special'; END IF; END $$; \
         CREATE TABLE step_three (x int); ALTER TABLE projects ADD COLUMN archived boolean NOT NULL DEFAULT false;",
    );
    let app = TestApp::builder()
        .pool_size(6)
        .template(template)
        .spawn()
        .await;
    old_tenants(&app, &["alpha", "bravo", "charlie"]).await;
    let latest = template.len() as i64;

    // Behind: refused clearly until migrated.
    let refused = app
        .gql()
        .tenant("alpha")
        .send(
            "mutation { login(email: \"owner@alpha.test\", password: \"password-123\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&refused), "TENANT_MIGRATION_PENDING", "{refused}");
    let status = app
        .gql()
        .admin()
        .send(
            "{ templateStatus { latestVersion behind versions { version tenants } } }",
            json!({}),
        )
        .await;
    assert_eq!(status["data"]["templateStatus"]["behind"], 3, "{status}");

    let summary = fleet::migrate_all(
        &app.app.pool,
        template,
        2,
        Arc::new(AtomicBool::new(false)),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(summary.migrated, 2, "{summary:?}");
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].0, "bravo");
    assert!(summary.failed[0].2.contains("bravo is special"));
    for slug in ["alpha", "charlie"] {
        assert_eq!(version(&app, slug).await, latest);
        assert!(has_table(&app, slug, "step_three").await);
    }
    assert_eq!(
        version(&app, "bravo").await,
        latest - 1,
        "bravo keeps its version"
    );
    assert!(
        !has_table(&app, "bravo", "step_three").await,
        "and nothing of the step"
    );

    app.app.tenants.clear();
    assert!(
        app.login("alpha", "owner@alpha.test", "password-123")
            .await
            .is_ok()
    );
    assert_eq!(
        app.login("bravo", "owner@bravo.test", "password-123").await,
        Err("TENANT_MIGRATION_PENDING".into())
    );
    let status = app
        .gql()
        .admin()
        .send(
            "{ templateStatus { behind failures { slug fromVersion failedVersion error } } }",
            json!({}),
        )
        .await;
    let s = &status["data"]["templateStatus"];
    assert_eq!(s["behind"], 1, "{status}");
    assert_eq!(s["failures"][0]["slug"], "bravo");
    assert_eq!(s["failures"][0]["failedVersion"], latest);
    // A second run has nothing left but bravo, and fails on it again.
    let again = fleet::migrate_all(
        &app.app.pool,
        template,
        2,
        Arc::new(AtomicBool::new(false)),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((again.migrated, again.failed.len()), (0, 1));
}

#[tokio::test]
async fn a_run_killed_part_way_leaves_whole_tenants_and_the_next_run_finishes() {
    let template = extended("SELECT pg_sleep(0.3); CREATE TABLE step_three (x int);");
    let app = TestApp::builder().template(template).spawn().await;
    let slugs = ["t1", "t2", "t3", "t4", "t5", "t6"];
    old_tenants(&app, &slugs).await;
    let latest = template.len() as i64;

    // A run on its own connections, killed mid-way: its pool goes with it,
    // as a crashed process's connections would.
    let (pool, _) = strata::db::build_pool(&app.url, 2);
    let run = tokio::spawn(async move {
        fleet::migrate_all(
            &pool,
            template,
            1,
            Arc::new(AtomicBool::new(false)),
            |_, _| {},
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut done = 0;
    for slug in slugs {
        let v = version(&app, slug).await;
        let table = has_table(&app, slug, "step_three").await;
        assert_eq!(
            v == latest,
            table,
            "{slug}: version {v}, table {table}: half-migrated"
        );
        done += usize::from(table);
    }
    assert!(done < slugs.len(), "the run was stopped before the end");

    let summary = fleet::migrate_all(
        &app.app.pool,
        template,
        3,
        Arc::new(AtomicBool::new(false)),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(summary.migrated, slugs.len() - done, "{summary:?}");
    assert!(summary.failed.is_empty());
    for slug in slugs {
        assert_eq!(version(&app, slug).await, latest);
    }
}

#[tokio::test]
async fn stopping_lets_tenants_under_way_finish_and_starts_no_more() {
    let template = extended("SELECT pg_sleep(0.2); CREATE TABLE step_three (x int);");
    let app = TestApp::builder().template(template).spawn().await;
    old_tenants(&app, &["s1", "s2", "s3", "s4"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let summary = fleet::migrate_all(&app.app.pool, template, 1, stop, move |_, outcome| {
        if matches!(outcome, Outcome::Migrated { .. }) {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await
    .unwrap();
    assert_eq!((summary.migrated, summary.skipped), (1, 3), "{summary:?}");
}

#[tokio::test]
async fn a_tenant_ahead_of_the_server_is_served() {
    // A newer server migrated it first; this (older) one keeps serving it.
    let app = TestApp::spawn().await;
    let token = app.tenant_with_owner("alpha", "free").await;
    let mut db = app.db().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut db,
        "UPDATE management.tenants SET template_version = template_version + 1",
    )
    .await
    .unwrap();
    app.app.tenants.clear();
    let body = app
        .gql()
        .token(&token)
        .send("{ projects { totalCount } }", json!({}))
        .await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn the_cli_dry_run_lists_what_each_tenant_would_get() {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    app.tenant_with_owner("bravo", "free").await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .env("DATABASE_URL", &app.url)
            .env("STRATA_DATA_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let current = run(&["tenants", "migrate"]);
    assert!(current.status.success(), "{current:?}");
    assert!(String::from_utf8_lossy(&current.stdout).contains("nothing to do"));
    // Pretend alpha is one version behind (dry run only reads).
    let mut db = app.db().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut db,
        "UPDATE management.tenants SET template_version = template_version - 1 WHERE slug = 'alpha'",
    )
    .await
    .unwrap();
    let dry = run(&["tenants", "migrate", "--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        out.contains("alpha") && out.contains(TEMPLATE[TEMPLATE.len() - 1].name),
        "{out}"
    );
    assert!(!out.contains("bravo"), "{out}");
    assert_eq!(
        version(&app, "alpha").await,
        TEMPLATE.len() as i64 - 1,
        "nothing changed"
    );
}
