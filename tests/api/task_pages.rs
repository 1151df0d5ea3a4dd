//! Task pages answered from memory (`graphql::task_page`) give what
//! async-graphql's own executor gives, for each shape a dashboard may ask.
//!
//! Each query runs twice: as written, and with a field only the executor
//! answers put where `%SLOW%` (in a task) or `%SLOW_PAGE%` (in the page)
//! stands, so the whole page goes to it. The two answers must match once
//! that field is taken out, and the server's count of pages answered from
//! memory says which way each went.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::common::{TestApp, code};

const PROBE: &str = "slowProbe";

/// Task pages the server answered from memory so far.
fn from_memory(app: &TestApp) -> u64 {
    app.app.pages_from_memory.load(Ordering::Relaxed)
}

/// A tenant with two projects: "Launch" with five tasks (statuses, due
/// dates and assignees varied: the owner, a member, nobody) and "Empty".
async fn seeded(app: &TestApp) -> String {
    let owner = app.tenant_with_owner("acme", "enterprise").await;
    app.member(&owner, "acme", "bo", "member").await;
    let users = app
        .gql()
        .token(&owner)
        .send("{ users(first: 10) { nodes { id email } } }", json!({}))
        .await;
    let id_of = |email: &str| {
        let nodes = users["data"]["users"]["nodes"].as_array().unwrap();
        let user = nodes.iter().find(|u| u["email"] == email).unwrap();
        user["id"].as_str().unwrap().to_owned()
    };
    let (me, bo) = (id_of("owner@acme.test"), id_of("bo@acme.test"));
    let launch = app.create_project(&owner, "Launch").await;
    app.create_project(&owner, "Empty").await;
    let tasks = [
        json!({ "title": "plan", "status": "DONE", "assigneeId": me, "dueDate": "2027-01-31" }),
        json!({ "title": "build \"it\"", "status": "IN_PROGRESS", "assigneeId": bo }),
        json!({ "title": "test", "assigneeId": bo, "dueDate": "2027-02-28" }),
        json!({ "title": "ship" }),
        json!({ "title": "tell", "status": "DONE", "assigneeId": me }),
    ];
    for mut task in tasks {
        task["projectId"] = json!(launch);
        app.create_task(&owner, task).await;
    }
    owner
}

/// `value` without the probe's keys, at any depth.
fn without_probe(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| *key != PROBE)
                .map(|(key, value)| (key.clone(), without_probe(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_probe).collect()),
        other => other.clone(),
    }
}

/// The answer to `query` from memory (`pages` task pages), after checking
/// that the executor gives the same one.
async fn same_both_ways(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
    pages: u64,
) -> Value {
    let before = from_memory(app);
    let fast_query = query.replace("%SLOW%", "").replace("%SLOW_PAGE%", "");
    let fast = app
        .gql()
        .token(token)
        .send(&fast_query, variables.clone())
        .await;
    assert_eq!(from_memory(app) - before, pages, "answered from memory");
    let slow_query = query
        .replace("%SLOW%", &format!("{PROBE}: project {{ id }}"))
        .replace(
            "%SLOW_PAGE%",
            &format!("{PROBE}: nodes {{ project {{ id }} }}"),
        );
    let slow = app.gql().token(token).send(&slow_query, variables).await;
    assert_eq!(from_memory(app) - before, pages, "the executor's answer");
    assert!(fast["errors"].is_null(), "{fast}");
    assert!(slow["errors"].is_null(), "{slow}");
    assert_ne!(fast, slow, "the probe must be in the executor's answer");
    assert_eq!(fast, without_probe(&slow), "from memory vs the executor");
    fast
}

#[tokio::test]
async fn a_dashboard_page_from_memory_is_what_the_executor_gives() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;

    let dashboard = same_both_ways(
        &app,
        &owner,
        "{ projects(first: 10) { edges { node { id name tasks(first: 20) { edges { node { id title status assignee { id displayName } %SLOW% } } } } } } }",
        json!({}),
        2,
    )
    .await;
    let projects = dashboard["data"]["projects"]["edges"].as_array().unwrap();
    let launch = &projects[0]["node"];
    assert_eq!(launch["name"], "Launch");
    let tasks = launch["tasks"]["edges"].as_array().unwrap();
    let titles: Vec<_> = tasks.iter().map(|t| t["node"]["title"].clone()).collect();
    assert_eq!(titles, ["plan", "build \"it\"", "test", "ship", "tell"]);
    assert_eq!(tasks[0]["node"]["status"], "DONE");
    assert_eq!(tasks[1]["node"]["status"], "IN_PROGRESS");
    assert_eq!(tasks[1]["node"]["assignee"]["displayName"], "bo");
    assert_eq!(tasks[4]["node"]["assignee"]["displayName"], "Owner");
    assert!(tasks[3]["node"]["assignee"].is_null(), "unassigned: null");
    let empty = &projects[1]["node"];
    assert_eq!(empty["tasks"]["edges"], json!([]));
}

#[tokio::test]
async fn a_page_from_memory_is_byte_for_byte_the_executors() {
    // The same projects asked again under the same key, fewer fields: the
    // executor merges the two, so the pages go to it, and its merged answer
    // is the first one's. (Not `totalCount`: async-graphql's connections
    // put it after their own fields whatever the order asked; memory keeps
    // the order asked, as the GraphQL spec says.)
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;
    let page = "projects(first: 10) { edges { node { id name tasks(first: 20) { __typename \
        pageInfo { hasNextPage endCursor } edges { cursor node { id title status dueDate createdAt \
        updatedAt assignee { id email displayName disabled createdAt } } } } } } }";
    let again = "projects(first: 10) { edges { node { id } } }";
    let before = from_memory(&app);
    let fast = app
        .gql()
        .token(&owner)
        .send_text(&format!("{{ {page} }}"), json!({}))
        .await;
    assert_eq!(from_memory(&app) - before, 2, "answered from memory");
    let slow = app
        .gql()
        .token(&owner)
        .send_text(&format!("{{ {page} {again} }}"), json!({}))
        .await;
    assert_eq!(from_memory(&app) - before, 2, "the executor's answer");
    assert!(
        fast.contains(r#""title":"build \"it\"","status":"IN_PROGRESS""#),
        "{fast}"
    );
    assert_eq!(fast, slow);
}

#[tokio::test]
async fn a_page_asked_twice_under_one_key_is_merged_as_the_executor_merges_it() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;
    let before = from_memory(&app);
    for query in [
        "{ projects(first: 10) { nodes { name tasks(first: 20) { nodes { title } } tasks(first: 20) { totalCount nodes { status } } } } }",
        "{ projects(first: 10) { nodes { name ...A ...B } } } \
         fragment A on Project { tasks(first: 20) { nodes { title } } } \
         fragment B on Project { tasks(first: 20) { totalCount nodes { status } } }",
    ] {
        let body = app.gql().token(&owner).send(query, json!({})).await;
        assert!(body["errors"].is_null(), "{body}");
        let launch = &body["data"]["projects"]["nodes"][0];
        assert_eq!(launch["name"], "Launch");
        let tasks = &launch["tasks"];
        assert_eq!(tasks["totalCount"], 5, "{body}");
        assert_eq!(tasks["nodes"][1]["title"], "build \"it\"", "{body}");
        assert_eq!(tasks["nodes"][1]["status"], "IN_PROGRESS", "{body}");
    }
    assert_eq!(from_memory(&app), before, "both went to the executor");
}

#[tokio::test]
async fn aliases_fragments_typenames_nodes_page_info_and_counts_match_the_executor() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;

    let query = r#"
        query Q {
          projects(first: 10) {
            nodes {
              name
              firstTwo: tasks(first: 2) {
                __typename
                totalCount
                pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }
                edges { __typename cursor ...E node { ...T } }
                nodes { ... on Task { id dueDate } ... { late: dueDate } %SLOW% }
              }
              done: tasks(first: 20, status: DONE) { totalCount nodes { title %SLOW% } }
            }
          }
        }
        fragment E on TaskEdge { again: cursor }
        fragment T on Task {
          __typename id title status dueDate createdAt updatedAt
          who: assignee { __typename id email displayName disabled createdAt }
          %SLOW%
        }"#;
    let page = same_both_ways(&app, &owner, query, json!({}), 4).await;
    let launch = &page["data"]["projects"]["nodes"][0];
    let two = &launch["firstTwo"];
    assert_eq!(two["__typename"], "TaskConnection");
    assert_eq!(two["totalCount"], 5);
    let info = &two["pageInfo"];
    assert_eq!(info["__typename"], "PageInfo");
    assert_eq!(info["hasNextPage"], true);
    assert_eq!(info["hasPreviousPage"], false);
    let edges = two["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["__typename"], "TaskEdge");
    assert_eq!(edges[0]["cursor"], edges[0]["again"]);
    assert_eq!(info["startCursor"], edges[0]["cursor"]);
    assert_eq!(info["endCursor"], edges[1]["cursor"]);
    let first = &edges[0]["node"];
    assert_eq!(first["__typename"], "Task");
    assert_eq!(first["dueDate"], "2027-01-31");
    assert_eq!(first["who"]["__typename"], "User");
    assert_eq!(first["who"]["email"], "owner@acme.test");
    assert_eq!(first["who"]["disabled"], false);
    assert!(edges[1]["node"]["dueDate"].is_null());
    assert_eq!(two["nodes"][0]["late"], "2027-01-31");
    assert_eq!(launch["done"]["totalCount"], 2);
    let empty = &page["data"]["projects"]["nodes"][1]["firstTwo"];
    assert!(empty["pageInfo"]["startCursor"].is_null());
    assert_eq!(empty["totalCount"], 0);
}

#[tokio::test]
async fn the_tenants_task_list_pages_from_memory_as_the_executor_does() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;
    let query = "query($after: String) { tasks(first: 2, after: $after) { totalCount pageInfo { hasPreviousPage hasNextPage endCursor } edges { cursor node { title assignee { email } %SLOW% } } } }";

    let first = same_both_ways(&app, &owner, query, json!({ "after": null }), 1).await;
    let after = first["data"]["tasks"]["pageInfo"]["endCursor"].clone();
    let second = same_both_ways(&app, &owner, query, json!({ "after": after }), 1).await;
    let page = &second["data"]["tasks"];
    assert_eq!(page["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(page["edges"][0]["node"]["title"], "test");
    assert_eq!(page["edges"][1]["node"]["title"], "ship");
    assert_eq!(
        page["edges"][0]["node"]["assignee"]["email"],
        "bo@acme.test"
    );
    assert_eq!(page["totalCount"], 5);
}

#[tokio::test]
async fn what_memory_cannot_answer_still_gets_the_executors_answer() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;

    let before = from_memory(&app);

    // A response key asked twice: the executor merges the two selections.
    let merged = app
        .gql()
        .token(&owner)
        .send(
            "{ tasks(first: 5) { edges { node { title assignee { id } assignee { email roles { role { key } } } } } } }",
            json!({}),
        )
        .await;
    assert!(merged["errors"].is_null(), "{merged}");
    let bo = &merged["data"]["tasks"]["edges"][1]["node"]["assignee"];
    assert!(bo["id"].is_string(), "{bo}");
    assert_eq!(bo["email"], "bo@acme.test");
    assert_eq!(bo["roles"][0]["role"]["key"], "member");

    // A viewer without `members:read` reads the tasks, and gets one
    // FORBIDDEN per assigned task, at its path.
    let key = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
            json!({ "i": { "name": "ci", "permissions": ["projects:read", "tasks:read"] } }),
        )
        .await;
    let key = key["data"]["createApiKey"]["secret"].as_str().unwrap();
    let peek = app
        .gql()
        .token(key)
        .send(
            "{ projects(first: 1) { nodes { tasks(first: 20) { nodes { title assignee { email } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&peek), "FORBIDDEN", "{peek}");
    let errors = peek["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 4, "one per assigned task: {peek}");
    assert_eq!(
        errors[0]["path"],
        json!(["projects", "nodes", 0, "tasks", "nodes", 0, "assignee"])
    );
    let tasks = &peek["data"]["projects"]["nodes"][0]["tasks"]["nodes"];
    assert_eq!(tasks[3]["title"], "ship");
    assert!(tasks[0]["assignee"].is_null());
    assert_eq!(from_memory(&app), before, "both went to the executor");
}

#[tokio::test]
async fn fields_left_out_by_include_and_skip_leave_what_the_executor_leaves() {
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;
    let query = "query($on: Boolean!) { projects(first: 1) { nodes { tasks(first: 20) { pageInfo { hasNextPage @include(if: $on) } edges { cursor @skip(if: true) node { id @include(if: $on) } } %SLOW_PAGE% } } } }";

    // Every field of an object left out: the executor gives null, even
    // for a non-null type (async-graphql's way); so does memory.
    let off = same_both_ways(&app, &owner, query, json!({ "on": false }), 1).await;
    let page = &off["data"]["projects"]["nodes"][0]["tasks"];
    assert!(page["pageInfo"].is_null(), "{page}");
    assert!(page["edges"][0]["node"].is_null(), "{page}");
    assert!(page["edges"][0].get("cursor").is_none(), "{page}");

    let on = same_both_ways(&app, &owner, query, json!({ "on": true }), 1).await;
    let page = &on["data"]["projects"]["nodes"][0]["tasks"];
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert!(page["edges"][4]["node"]["id"].is_string(), "{page}");
}

#[tokio::test]
async fn a_projects_page_reads_every_column_as_the_tenants_task_list_does() {
    // A project's page comes from a hand-written statement read by column
    // position, the tenant's list from diesel's query read by name: a
    // column out of place in the first (two timestamps swapped, say) makes
    // the two disagree.
    let app = TestApp::spawn().await;
    let owner = seeded(&app).await;
    let listed = app
        .gql()
        .token(&owner)
        .send("{ tasks(first: 10) { nodes { id } } }", json!({}))
        .await;
    let first = listed["data"]["tasks"]["nodes"][0]["id"].clone();
    let changed = app
        .gql()
        .token(&owner)
        .send(
            "mutation($i: UpdateTaskInput!) { updateTask(input: $i) { task { id } } }",
            json!({ "i": { "id": first, "title": "plan again" } }),
        )
        .await;
    assert!(changed["errors"].is_null(), "{changed}");

    let fields = "id title status dueDate createdAt updatedAt assignee { id }";
    let body = app
        .gql()
        .token(&owner)
        .send(
            &format!(
                "{{ projects(first: 10) {{ nodes {{ name tasks(first: 10) {{ nodes {{ {fields} }} }} }} }} \
                 tasks(first: 10) {{ nodes {{ {fields} }} }} }}"
            ),
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let launch = body["data"]["projects"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Launch")
        .unwrap();
    let by_project = &launch["tasks"]["nodes"];
    assert_eq!(by_project, &body["data"]["tasks"]["nodes"]);
    let updated = &by_project[0];
    assert_eq!(updated["title"], "plan again");
    assert_ne!(updated["createdAt"], updated["updatedAt"]);
    assert_eq!(updated["dueDate"], "2027-01-31");
}
