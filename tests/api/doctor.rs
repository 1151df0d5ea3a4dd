//! `strata doctor`: each kind of break in isolation is found, a sound
//! database has no finding, and the command's exit status says which.

use diesel_async::SimpleAsyncConnection as _;
use strata::tenancy::doctor::{self, Report};
use strata::tenancy::template::TEMPLATE;

use crate::common::TestApp;

async fn report(app: &TestApp) -> Report {
    let mut db = app.db().await;
    doctor::check(&mut db, TEMPLATE).await.unwrap()
}

/// The findings of `check`, as text.
fn of(report: &Report, check: &str) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.check == check)
        .map(ToString::to_string)
        .collect()
}

async fn two_tenants() -> TestApp {
    let app = TestApp::spawn().await;
    app.tenant_with_owner("alpha", "free").await;
    app.tenant_with_owner("beta", "free").await;
    let report = report(&app).await;
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!((report.tenants, report.schemas), (2, 2));
    app
}

async fn run(app: &TestApp, sql: &str) {
    let mut db = app.db().await;
    db.batch_execute(sql).await.expect(sql);
}

#[tokio::test]
async fn finds_a_schema_without_a_row_and_a_row_without_a_schema() {
    let app = two_tenants().await;
    run(
        &app,
        "CREATE SCHEMA tenant_ghost; CREATE TABLE tenant_ghost.t (x int); \
         DROP SCHEMA tenant_beta CASCADE",
    )
    .await;
    let report = report(&app).await;
    let orphans = of(&report, "schema without tenant");
    assert_eq!(orphans.len(), 1, "{report:#?}");
    assert!(orphans[0].contains("tenant_ghost"));
    let missing = of(&report, "tenant without schema");
    assert_eq!(missing.len(), 1, "{report:#?}");
    assert!(missing[0].contains("beta"));
    assert!(
        report.findings.iter().all(|f| !f.subject.contains("alpha")),
        "alpha is sound: {report:#?}"
    );
}

#[tokio::test]
async fn finds_grants_that_cross_tenants() {
    let app = two_tenants().await;
    let (a, b) = (
        app.binding("alpha").await.role,
        app.binding("beta").await.role,
    );
    run(
        &app,
        &format!(
            "GRANT USAGE ON SCHEMA tenant_beta TO \"{a}\"; \
             GRANT SELECT ON tenant_beta.users TO \"{a}\"; \
             GRANT SELECT ON management.tenants TO \"{a}\"; \
             GRANT \"{b}\" TO \"{a}\"; \
             GRANT SELECT ON tenant_beta.projects TO PUBLIC"
        ),
    )
    .await;
    let report = report(&app).await;
    let found = of(&report, "grant across tenants").join("\n");
    for expected in [
        format!("role {a} has USAGE on schema tenant_beta"),
        format!("role {a} has SELECT on relation tenant_beta.users"),
        format!("role {a} has SELECT on relation management.tenants"),
        format!("role {a} is a member of role {b}"),
        "PUBLIC has SELECT on relation tenant_beta.projects".to_owned(),
    ] {
        assert!(found.contains(&expected), "{expected} not in:\n{found}");
    }
    assert!(
        !found.contains(&format!("role {b} has")),
        "beta's own rights are not findings:\n{found}"
    );
}

#[tokio::test]
async fn finds_drift_from_the_template_and_references_across_schemas() {
    let app = two_tenants().await;
    run(
        &app,
        "ALTER TABLE tenant_alpha.projects ADD COLUMN extra int; \
         DROP INDEX tenant_alpha.tasks_assignee_id_idx; \
         ALTER TABLE tenant_alpha.tasks ADD CONSTRAINT stolen \
             FOREIGN KEY (assignee_id) REFERENCES tenant_beta.users (id); \
         ALTER TABLE tenant_beta.projects ADD COLUMN owner_tenant uuid \
             REFERENCES management.tenants (id); \
         CREATE VIEW tenant_alpha.peek AS SELECT name FROM tenant_beta.projects",
    )
    .await;
    let report = report(&app).await;
    let drift = of(&report, "template version").join("\n");
    assert!(
        drift.contains("alpha: schema differs from template version"),
        "{drift}"
    );
    assert!(drift.contains("column projects.extra"), "{drift}");
    assert!(
        drift.contains("missing [") && drift.contains("tasks_assignee_id_idx"),
        "{drift}"
    );
    let keys = of(&report, "foreign key across schemas").join("\n");
    assert!(
        keys.contains("tenant_alpha.tasks: foreign key stolen references tenant_beta.users"),
        "{keys}"
    );
    assert!(keys.contains("references management.tenants"), "{keys}");
    let refs = of(&report, "reference to another schema").join("\n");
    assert!(
        refs.contains("tenant_alpha.peek: depends on tenant_beta.projects"),
        "{refs}"
    );
}

#[tokio::test]
async fn finds_an_access_version_trigger_disabled_or_no_longer_always() {
    let app = two_tenants().await;
    // Servers reuse permissions until the version changes: a trigger that no
    // longer fires would let them keep permissions the roles took away.
    run(
        &app,
        "ALTER TABLE tenant_alpha.role_assignments DISABLE TRIGGER role_assignments_bump_access_version; \
         ALTER TABLE tenant_beta.roles ENABLE TRIGGER roles_bump_access_version",
    )
    .await;
    let report = report(&app).await;
    let drift = of(&report, "template version").join("\n");
    assert!(
        drift.contains("alpha: schema differs")
            && drift.contains("role_assignments_bump_access_version"),
        "{drift}"
    );
    assert!(
        drift.contains("beta: schema differs") && drift.contains("roles_bump_access_version"),
        "{drift}"
    );
}

#[tokio::test]
async fn finds_a_schema_emptied_of_everything() {
    let app = two_tenants().await;
    run(
        &app,
        "DROP SCHEMA tenant_beta CASCADE; CREATE SCHEMA tenant_beta",
    )
    .await;
    let report = report(&app).await;
    let drift = of(&report, "template version").join("\n");
    assert!(
        drift.contains("beta: schema differs from template version"),
        "{drift}"
    );
    assert!(drift.contains("missing ["), "{drift}");
    assert!(!drift.contains("alpha"), "{drift}");
}

#[tokio::test]
async fn the_command_exits_non_zero_on_findings() {
    let app = two_tenants().await;
    let doctor = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("doctor")
            .env("DATABASE_URL", &app.url)
            .env("STRATA_DATA_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let clean = doctor();
    assert!(clean.status.success(), "{clean:?}");
    assert!(
        String::from_utf8_lossy(&clean.stdout)
            .contains("checked 2 tenant(s) and 2 tenant schema(s): 0 finding(s)")
    );
    run(&app, "CREATE SCHEMA tenant_ghost").await;
    let dirty = doctor();
    assert!(!dirty.status.success());
    let out = String::from_utf8_lossy(&dirty.stdout);
    assert!(out.contains("schema without tenant: tenant_ghost"), "{out}");
}
