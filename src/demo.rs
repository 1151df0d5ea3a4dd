//! The demo seeded on a fresh built-in database: tenants `acme` and `globex`,
//! an owner in each, a few projects and tasks.

use crate::App;
use crate::domain::{projects, tasks};
use crate::error::AppResult;
use crate::in_tenant;
use crate::tenancy::provision::{self, CreateTenant};

/// A demo sign-in: (tenant slug, email, password).
pub const LOGINS: &[(&str, &str, &str)] = &[
    ("acme", "owner@acme.test", "acme-demo-password"),
    ("globex", "owner@globex.test", "globex-demo-password"),
];

/// (slug, name, plan, [(project, [task titles])]).
type DemoTenant = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);

/// Creates the demo tenants and their data.
pub async fn seed(app: &App) -> AppResult<()> {
    let data: &[DemoTenant] = &[
        (
            "acme",
            "Acme Corporation",
            "professional",
            &[
                (
                    "Website relaunch",
                    &["Pick a typeface", "Write the copy", "Ship it"],
                ),
                (
                    "Road runner trap",
                    &["Order anvils", "Paint tunnel on rock"],
                ),
            ],
        ),
        (
            "globex",
            "Globex",
            "free",
            &[("Doomsday device", &["Find a volcano", "Hire henchmen"])],
        ),
    ];
    for ((slug, name, plan, project_list), (_, email, password)) in data.iter().zip(LOGINS) {
        let made = provision::create_tenant(
            &app.pool,
            app.template,
            CreateTenant {
                slug: (*slug).to_owned(),
                name: (*name).to_owned(),
                plan: (*plan).to_owned(),
                owner_email: (*email).to_owned(),
                owner_password: (*password).to_owned(),
                owner_display_name: format!("{name} Owner"),
            },
        )
        .await?;
        let bind = crate::tenancy::conn::TenantBinding::of(
            &made.tenant.slug,
            made.tenant.db_role.as_deref(),
        )?;
        let owner = made.owner.id;
        for (project_name, task_titles) in project_list.iter() {
            in_tenant!(&app.pool, &bind, |conn| {
                let project =
                    projects::create(conn, (*project_name).to_owned(), None, None).await?;
                for (i, title) in task_titles.iter().enumerate() {
                    tasks::create(
                        conn,
                        tasks::NewTask {
                            project_id: project.id,
                            title: (*title).to_owned(),
                            status: tasks::STATUSES[i % tasks::STATUSES.len()],
                            assignee_id: (i % 2 == 0).then_some(owner),
                            due_date: None,
                        },
                    )
                    .await?;
                }
                Ok(())
            })?;
        }
    }
    app.tenants.clear();
    Ok(())
}
