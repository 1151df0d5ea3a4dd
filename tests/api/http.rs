//! The HTTP surface: methods, bodies, limits, GraphiQL, health.

use serde_json::{Value, json};

use crate::common::{TestApp, code};

#[tokio::test]
async fn mutation_over_get_is_refused_with_405() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/graphql"))
        .query(&[(
            "query",
            "mutation { login(email: \"a@b.co\", password: \"x\") { token } }",
        )])
        .header("x-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn query_over_get_works() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/graphql"))
        .query(&[
            ("query", "query Plans { plans { code } }"),
            ("operationName", "Plans"),
        ])
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["plans"][0]["code"], "free");
}

#[tokio::test]
async fn malformed_bodies_get_4xx_with_a_graphql_error() {
    let app = TestApp::spawn().await;
    let post = |body: Vec<u8>, ctype: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let bad_json = post(b"{\"query\": ".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_eq!(code(&bad_json.json().await.unwrap()), "BAD_USER_INPUT");

    let not_json = post(b"query=x".to_vec(), "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    let huge = format!(
        "{{\"query\": \"{{ plans {{ code }} }}\", \"x\": \"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let too_big = post(huge.into_bytes(), "application/json").await.unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(code(&too_big.json().await.unwrap()), "BAD_USER_INPUT");
}

#[tokio::test]
async fn bad_documents_get_stable_codes() {
    let app = TestApp::spawn().await;
    let parse = app.gql().admin().send("{ plans { code ", json!({})).await;
    assert_eq!(code(&parse), "GRAPHQL_PARSE_FAILED");
    let unknown = app.gql().admin().send("{ nope }", json!({})).await;
    assert_eq!(code(&unknown), "GRAPHQL_VALIDATION_FAILED");
    let deep = "{ projects { edges { node { tasks { edges { node { project { tasks { edges { node { project { tasks { edges { node { id } } } } } } } } } } } } } } }";
    let too_deep = app.gql().admin().tenant("acme").send(deep, json!({})).await;
    assert_eq!(code(&too_deep), "GRAPHQL_VALIDATION_FAILED", "{too_deep}");
    let complex = "{ projects(first: 100) { edges { node { tasks(first: 100) { edges { node { id title } } } } } } }";
    let too_complex = app
        .gql()
        .admin()
        .tenant("acme")
        .send(complex, json!({}))
        .await;
    assert_eq!(
        code(&too_complex),
        "GRAPHQL_VALIDATION_FAILED",
        "{too_complex}"
    );
}

#[tokio::test]
async fn graphiql_and_health_endpoints() {
    let app = TestApp::spawn().await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/graphiql/graphiql.min.js"));
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        let resp = app
            .http
            .get(app.url(&format!("/graphiql/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(
            resp.bytes().await.unwrap().len() > 1000,
            "{asset} is served from the binary"
        );
    }
    assert_eq!(
        app.http
            .get(app.url("/graphiql/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[test]
fn committed_schema_graphql_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    assert!(
        committed == strata::graphql::sdl(),
        "schema.graphql is stale: run `cargo run -- print-schema`"
    );
}

/// The value of the series `series` (name and labels, as Prometheus'
/// text format writes them) on the page `metrics`; 0 when it is absent.
fn series(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_and_error_codes_and_name_no_tenant() {
    let app = TestApp::spawn().await;
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    let scrape = || async {
        let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        resp.text().await.unwrap()
    };
    let before = scrape().await;

    for _ in 0..3 {
        let body = app
            .gql()
            .token(&owner)
            .send("{ me { email } }", json!({}))
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let unknown = app
        .gql()
        .tenant("nosuch")
        .send("{ me { email } }", json!({}))
        .await;
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    let broken = app.gql().send("{ me {", json!({})).await;
    assert_eq!(code(&broken), "GRAPHQL_PARSE_FAILED");
    let project = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }",
            json!({ "i": { "name": "Counted" } }),
        )
        .await;
    assert!(project["errors"].is_null(), "{project}");
    let invalid = app
        .gql()
        .token(&owner)
        .send("{ noSuchField }", json!({}))
        .await;
    assert_eq!(code(&invalid), "GRAPHQL_VALIDATION_FAILED");
    let over_get = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout }")])
        .send()
        .await
        .unwrap();
    assert_eq!(over_get.status(), 405);
    let not_json = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{ me { email } }")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    let after = scrape().await;
    let grew = |name: &str| series(&after, name) - series(&before, name);
    let expected = [
        (r#"strata_graphql_requests_total{operation="query"}"#, 5.0),
        (
            r#"strata_graphql_requests_total{operation="mutation"}"#,
            2.0,
        ),
        (r#"strata_graphql_requests_total{operation="unknown"}"#, 2.0),
        (
            r#"strata_graphql_errors_total{code="UNAUTHENTICATED"}"#,
            1.0,
        ),
        (
            r#"strata_graphql_errors_total{code="GRAPHQL_PARSE_FAILED"}"#,
            1.0,
        ),
        (
            r#"strata_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}"#,
            1.0,
        ),
        // The mutation over GET (405) and the body that is not JSON (415).
        (r#"strata_graphql_errors_total{code="BAD_USER_INPUT"}"#, 2.0),
        ("strata_graphql_request_duration_seconds_count", 9.0),
    ];
    for (name, by) in expected {
        assert_eq!(grew(name), by, "{name}");
    }
    assert!(grew("strata_db_statements_total") > 0.0, "{after}");
    assert!(
        series(&after, r#"strata_db_connections{state="idle"}"#) >= 1.0,
        "{after}"
    );
    // Operators see the fleet's totals, never who is in it.
    assert!(
        !after.contains("acme") && !after.contains("nosuch"),
        "{after}"
    );
}
