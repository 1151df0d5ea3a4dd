//! The test harness: one PostgreSQL per test process (the built-in one when
//! `DATABASE_URL` is unset), one fresh database per test, cloned from a
//! migrated template database, and the real server on port 0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::{Value, json};
use strata::App;
use strata::config::{Config, Secrets};
use strata::db::embedded::{self, EmbeddedPostgres};
use strata::tenancy::template::{TEMPLATE, TemplateStep};

/// Where test databases are made.
struct Cluster {
    /// URL of the server, with no database name.
    server: String,
    /// Migrated database every test database is cloned from.
    template_db: String,
    /// Kept for the life of the process; stopped when it exits.
    _pg: Option<EmbeddedPostgres>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Test databases are named `strata_test_<unix seconds>_<pid>_<n>`.
const DB_PREFIX: &str = "strata_test_";

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(start_cluster())
        })
        .join()
        .expect("starting the test PostgreSQL")
    })
}

fn server_of(url: &str) -> String {
    // postgres://user:pw@host:port/db?params -> postgres://user:pw@host:port
    let (scheme, rest) = url.split_once("://").expect("DATABASE_URL has a scheme");
    let authority = rest.split(['/', '?']).next().unwrap();
    format!("{scheme}://{authority}")
}

async fn start_cluster() -> Cluster {
    let (server, pg) = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => (server_of(&url), None),
        None => {
            // Under the system temp folder, not the checkout: as root, PostgreSQL
            // runs as `postgres`, which may not be able to enter the checkout's
            // parent folders (a clone in a private temp folder, say).
            let base = std::env::temp_dir().join("strata-test-pg");
            sweep_dead_clusters(&base);
            let opts = embedded::Options {
                data_dir: base.join(std::process::id().to_string()),
                ephemeral: true,
            };
            let pg = EmbeddedPostgres::start(&opts).expect("start the built-in PostgreSQL");
            let server = pg.url("").trim_end_matches('/').to_owned();
            (server, Some(pg))
        }
    };
    let mut admin = strata::db::connect_with_retry(
        &format!("{server}/postgres"),
        std::time::Duration::from_secs(60),
    )
    .await
    .expect("connect to the test PostgreSQL");
    sweep_old_databases(&mut admin).await;
    let template_db = unique_db_name();
    admin
        .batch_execute(&format!("CREATE DATABASE {template_db}"))
        .await
        .expect("create the template database");
    strata::db::migrate(&format!("{server}/{template_db}"))
        .await
        .expect("migrate the template database");
    Cluster {
        server,
        template_db,
        _pg: pg,
    }
}

/// Removes clusters left by test processes that are gone.
fn sweep_dead_clusters(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(pid) = name.parse::<u32>()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Drops test databases more than three hours old (left by killed runs).
async fn sweep_old_databases(admin: &mut AsyncPgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'strata\\_test\\_%'")
            .load(admin)
            .await
            .unwrap_or_default();
    let now = now_secs();
    for row in rows {
        let ts = row.datname[DB_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        if ts.is_some_and(|ts| ts + 3 * 3600 < now) {
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    row.datname
                ))
                .await;
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn unique_db_name() -> String {
    format!(
        "{DB_PREFIX}{}_{}_{}",
        now_secs(),
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds a [`TestApp`].
pub struct TestAppBuilder {
    pool_size: u32,
    lanes: usize,
    lane_wait: std::time::Duration,
    template: &'static [TemplateStep],
    login_lock_after: u32,
}

impl TestAppBuilder {
    /// Most connections the server's pool holds.
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// Tenant lanes beside the pool (none by default: every tenant
    /// transaction then uses the pool, which tests of a pool of one rely on).
    pub fn lanes(mut self, n: usize) -> Self {
        self.lanes = n;
        self
    }

    /// How long a request queues for its busy lane (the server's default
    /// otherwise).
    pub fn lane_wait(mut self, wait: std::time::Duration) -> Self {
        self.lane_wait = wait;
        self
    }

    /// Failed logins in a row before an account is locked.
    pub fn login_lock_after(mut self, n: u32) -> Self {
        self.login_lock_after = n;
        self
    }

    /// Another tenant template.
    pub fn template(mut self, template: &'static [TemplateStep]) -> Self {
        self.template = template;
        self
    }

    /// A fresh database and a server on it.
    pub async fn spawn(self) -> TestApp {
        let cluster = cluster();
        let db = unique_db_name();
        let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", cluster.server))
            .await
            .expect("connect as admin");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db} TEMPLATE {}",
                cluster.template_db
            ))
            .await
            .expect("create the test database");
        let url = format!("{}/{db}", cluster.server);
        let config = Config {
            database_url: Some(url.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: std::env::temp_dir(),
            admin_token: Some(strata::config::random_secret()),
            token_secret: Some(strata::config::random_secret()),
            base_domain: Some("strata.test".into()),
            graphiql_dir: None,
            pool_size: self.pool_size,
            token_ttl_secs: 3600,
            session_ttl_secs: 3600,
            login_lock_after: self.login_lock_after,
            login_lock_secs: 900,
            tenant_retention_days: 30,
            schema_pool: 0,
            tenants_per_connection: 0,
            pool_lanes: self.lanes,
            change_feed: None,
        };
        let secrets = Secrets::load(&config).unwrap();
        let admin_token = secrets.admin_token.clone();
        let app = App::with_template(
            config,
            secrets,
            strata::db::build_pool_with(
                &url,
                strata::db::PoolOptions {
                    max_size: self.pool_size,
                    tenants_per_connection: 0,
                    lanes: self.lanes,
                    lane_wait: self.lane_wait,
                },
            ),
            self.template,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = strata::build_router(app.clone());
        tokio::spawn(strata::tenancy::changes::follow(
            url.clone(),
            app.tenants.clone(),
        ));
        // Serve once the change feed has connected: a test that ended while
        // the feed was still signing in would leave PostgreSQL waiting for
        // that sign-in (the test's runtime stops), and dropping the test
        // database would wait with it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !app.tenants.vouched() {
            assert!(
                std::time::Instant::now() < deadline,
                "the tenant change feed never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestApp {
            addr,
            admin_token,
            app,
            db,
            url,
            server: cluster.server.clone(),
            http: reqwest::Client::new(),
        }
    }
}

/// A running server on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub app: Arc<App>,
    /// The test database's name and URL.
    pub db: String,
    pub url: String,
    server: String,
    pub http: reqwest::Client,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let (server, db) = (self.server.clone(), self.db.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // Tenant roles are cluster-wide: read them before the
                // database goes, drop them after.
                let roles = tenant_roles(&format!("{server}/{db}")).await;
                if let Ok(mut admin) =
                    AsyncPgConnection::establish(&format!("{server}/postgres")).await
                {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .await;
                    for role in roles {
                        let _ = admin
                            .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// The database roles of a test database's tenants and warm-pool schemas.
async fn tenant_roles(url: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        db_role: String,
    }
    let Ok(mut conn) = AsyncPgConnection::establish(url).await else {
        return Vec::new();
    };
    diesel::sql_query(
        "SELECT db_role FROM management.tenants WHERE db_role IS NOT NULL \
         AND db_role ~ '^[a-z][a-z0-9_]*$' \
         UNION ALL SELECT db_role FROM management.schema_pool",
    )
    .load::<Row>(&mut conn)
    .await
    .map(|rows| rows.into_iter().map(|r| r.db_role).collect())
    .unwrap_or_default()
}

/// One GraphQL request being put together.
pub struct Gql<'a> {
    app: &'a TestApp,
    headers: Vec<(String, String)>,
}

impl<'a> Gql<'a> {
    /// Sends `X-Tenant: slug`.
    pub fn tenant(mut self, slug: &str) -> Self {
        self.headers.push(("x-tenant".into(), slug.into()));
        self
    }
    /// Sends `Authorization: Bearer token`.
    pub fn token(mut self, token: &str) -> Self {
        self.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        self
    }
    /// Sends the admin token.
    pub fn admin(self) -> Self {
        let token = self.app.admin_token.clone();
        self.token(&token)
    }
    /// Sends any header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// POSTs the query and returns the JSON body (asserting a 200).
    pub async fn send(self, query: &str, variables: Value) -> Value {
        serde_json::from_str(&self.send_text(query, variables).await).expect("JSON body")
    }
    /// POSTs the query and returns the body as it came (asserting a 200).
    pub async fn send_text(self, query: &str, variables: Value) -> String {
        let mut req = self
            .app
            .http
            .post(self.app.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200, "GraphQL answers 200");
        resp.text().await.expect("a body")
    }
}

impl TestApp {
    /// Defaults: a pool of 4, the built-in template.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            pool_size: 4,
            lanes: 0,
            lane_wait: strata::db::LANE_WAIT,
            template: TEMPLATE,
            login_lock_after: 10,
        }
    }

    /// A server with the defaults.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A GraphQL request.
    pub fn gql(&self) -> Gql<'_> {
        Gql {
            app: self,
            headers: Vec::new(),
        }
    }

    /// What a tenant's transactions are bound to (its schema and role).
    pub async fn binding(&self, slug: &str) -> strata::tenancy::conn::TenantBinding {
        let mut conn = self.app.pool.get().await.unwrap();
        let tenant = strata::tenancy::tenants::find_by_slug(&mut conn, slug)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no tenant {slug}"));
        strata::tenancy::conn::TenantBinding::of(&tenant.slug, tenant.db_role.as_deref()).unwrap()
    }

    /// A direct connection to the test database (for checking what is stored).
    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Creates a tenant through the API; returns the response.
    pub async fn create_tenant_raw(&self, slug: &str, plan: &str) -> Value {
        self.gql()
            .admin()
            .send(
                CREATE_TENANT,
                json!({ "input": {
                    "slug": slug, "name": format!("{slug} Inc"), "plan": plan,
                    "owner": { "email": format!("owner@{slug}.test"), "password": "password-123", "displayName": "Owner" }
                }}),
            )
            .await
    }

    /// Creates a tenant and signs its owner in; returns the owner's token.
    pub async fn tenant_with_owner(&self, slug: &str, plan: &str) -> String {
        let made = self.create_tenant_raw(slug, plan).await;
        assert!(made["errors"].is_null(), "createTenant {slug}: {made}");
        self.login(slug, &format!("owner@{slug}.test"), "password-123")
            .await
            .unwrap_or_else(|e| panic!("login {slug}: {e}"))
    }

    /// Signs in; the access token, or the error code.
    pub async fn login(&self, slug: &str, email: &str, password: &str) -> Result<String, String> {
        self.login_full(slug, email, password)
            .await
            .map(|s| s.token)
    }

    /// Signs in; the session's tokens, or the error code.
    pub async fn login_full(
        &self,
        slug: &str,
        email: &str,
        password: &str,
    ) -> Result<SignedIn, String> {
        let body = self
            .gql()
            .tenant(slug)
            .send(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token refreshToken session { id } user { id } } }",
                json!({ "e": email, "p": password }),
            )
            .await;
        let login = &body["data"]["login"];
        match login["token"].as_str() {
            Some(t) => Ok(SignedIn {
                token: t.to_owned(),
                refresh_token: login["refreshToken"].as_str().unwrap().to_owned(),
                session_id: login["session"]["id"].as_str().unwrap().to_owned(),
                user_id: login["user"]["id"].as_str().unwrap().to_owned(),
            }),
            None => Err(code(&body).to_owned()),
        }
    }

    /// Adds a user with `role` as `token` (an owner's, say) and signs them
    /// in; password "password-123", email `<name>@<slug>.test`.
    pub async fn member(&self, owner_token: &str, slug: &str, name: &str, role: &str) -> SignedIn {
        let email = format!("{name}@{slug}.test");
        let body = self
            .gql()
            .token(owner_token)
            .send(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }",
                json!({ "i": { "email": email, "displayName": name, "password": "password-123", "role": role } }),
            )
            .await;
        assert!(body["errors"].is_null(), "createUser {name}: {body}");
        self.login_full(slug, &email, "password-123")
            .await
            .unwrap_or_else(|e| panic!("login {name}: {e}"))
    }

    /// Creates a project as `token`; returns its id.
    pub async fn create_project(&self, token: &str, name: &str) -> String {
        let body = self
            .gql()
            .token(token)
            .send(
                "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }",
                json!({ "i": { "name": name } }),
            )
            .await;
        body["data"]["createProject"]["project"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createProject: {body}"))
            .to_owned()
    }

    /// Creates a task (`input` is a `CreateTaskInput`) as `token`; returns
    /// its id.
    pub async fn create_task(&self, token: &str, input: Value) -> String {
        let body = self
            .gql()
            .token(token)
            .send(
                "mutation($i: CreateTaskInput!) { createTask(input: $i) { task { id } } }",
                json!({ "i": input }),
            )
            .await;
        body["data"]["createTask"]["task"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("createTask: {body}"))
            .to_owned()
    }
}

/// A signed-in user's credentials.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub refresh_token: String,
    pub session_id: String,
    pub user_id: String,
}

/// The createTenant mutation, returning everything.
pub const CREATE_TENANT: &str = "mutation($input: CreateTenantInput!) {
  createTenant(input: $input) {
    tenant { id slug name status schemaName templateVersion plan { code } }
    owner { id email displayName role }
  }
}";

/// The first error's `extensions.code` ("" when there is none).
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// Runs `sql` returning one bigint column named `n`.
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .expect(sql)
        .n
}
