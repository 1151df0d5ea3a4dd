//! Projects and tasks: CRUD, pagination, filters, batching, plan limits.

use serde_json::{Value, json};

use crate::common::{TestApp, code};

async fn create_task(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql()
        .token(token)
        .send(
            "mutation($i: CreateTaskInput!) { createTask(input: $i) { task { id title status dueDate assignee { email } project { name } } } }",
            json!({ "i": input }),
        )
        .await
}

/// The signed-in user's id.
async fn my_id(app: &TestApp, token: &str) -> String {
    let me = app
        .gql()
        .token(token)
        .send("{ me { id } }", json!({}))
        .await;
    me["data"]["me"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn project_and_task_crud() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let me_id = my_id(&app, &t).await;
    let p = app.create_project(&t, "Launch").await;
    let made = create_task(
        &app,
        &t,
        json!({"projectId": p, "title": "Write", "assigneeId": me_id, "dueDate": "2027-01-31"}),
    )
    .await;
    let task = &made["data"]["createTask"]["task"];
    assert_eq!(task["status"], "TODO");
    assert_eq!(task["assignee"]["email"], "owner@acme.test");
    assert_eq!(task["project"]["name"], "Launch");
    assert_eq!(task["dueDate"], "2027-01-31");
    let task_id = task["id"].as_str().unwrap().to_owned();

    let updated = app
        .gql()
        .token(&t)
        .send(
            "mutation($i: UpdateTaskInput!) { updateTask(input: $i) { task { status assignee { email } dueDate } } }",
            json!({"i": {"id": task_id, "status": "DONE", "assigneeId": null}}),
        )
        .await;
    let task = &updated["data"]["updateTask"]["task"];
    assert_eq!(task["status"], "DONE");
    assert!(task["assignee"].is_null());
    assert_eq!(task["dueDate"], "2027-01-31", "fields left out stay");

    let renamed = app
        .gql()
        .token(&t)
        .send(
            "mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { name description } } }",
            json!({"i": {"id": p, "name": "Relaunch", "description": "v2"}}),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateProject"]["project"]["name"],
        "Relaunch"
    );

    let deleted = app
        .gql()
        .token(&t)
        .send(
            "mutation($i: DeleteProjectInput!) { deleteProject(input: $i) { deletedProjectId } }",
            json!({"i": {"id": p}}),
        )
        .await;
    assert_eq!(deleted["data"]["deleteProject"]["deletedProjectId"], p);
    let gone = app
        .gql()
        .token(&t)
        .send(
            "query($id: ID!) { project(id: $id) { id } tasks { totalCount } }",
            json!({"id": p}),
        )
        .await;
    assert!(gone["data"]["project"].is_null());
    assert_eq!(
        gone["data"]["tasks"]["totalCount"], 0,
        "tasks go with their project"
    );
    let again = app
        .gql()
        .token(&t)
        .send(
            "mutation($i: DeleteProjectInput!) { deleteProject(input: $i) { deletedProjectId } }",
            json!({"i": {"id": p}}),
        )
        .await;
    assert_eq!(code(&again), "NOT_FOUND");
}

#[tokio::test]
async fn bad_ids_cursors_and_inputs_are_bad_user_input() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let cases = [
        ("{ project(id: \"not-a-uuid\") { id } }", "id"),
        ("{ projects(after: \"garbage\") { totalCount } }", "after"),
        ("{ projects(first: 1000) { totalCount } }", "first"),
        ("{ tasks(projectId: \"x\") { totalCount } }", "projectId"),
        (
            "mutation { createProject(input: {name: \"\"}) { project { id } } }",
            "name",
        ),
    ];
    for (q, field) in cases {
        let body = app.gql().token(&t).send(q, json!({})).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{q}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{q}");
    }
    // Text PostgreSQL would refuse, and a date that is not one.
    let nul = app
        .gql()
        .token(&t)
        .send(
            "mutation($n: String!) { createProject(input: {name: $n}) { project { id } } }",
            json!({"n": "a\0b"}),
        )
        .await;
    assert_eq!(code(&nul), "BAD_USER_INPUT", "{nul}");
    let p = app.create_project(&t, "p").await;
    let date = app
        .gql()
        .token(&t)
        .send(
            "mutation($p: ID!) { createTask(input: {projectId: $p, title: \"t\", dueDate: \"next tuesday\"}) { task { id } } }",
            json!({"p": p}),
        )
        .await;
    assert_eq!(code(&date), "BAD_USER_INPUT", "{date}");
    let login = app
        .gql()
        .tenant("acme")
        .send(
            "mutation { login(email: \"a\\u0000@b.co\", password: \"password-123\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&login), "UNAUTHENTICATED", "{login}");
    let count = app
        .gql()
        .token(&t)
        .send("{ projects { totalCount } }", json!({}))
        .await;
    assert_eq!(
        count["data"]["projects"]["totalCount"], 1,
        "nothing else was written"
    );
}

#[tokio::test]
async fn pagination_walks_every_row_once() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    for i in 0..7 {
        app.create_project(&t, &format!("p{i}")).await;
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = app
            .gql()
            .token(&t)
            .send(
                "query($a: String) { projects(first: 3, after: $a) { totalCount pageInfo { hasNextPage endCursor } edges { node { name } } } }",
                json!({ "a": after }),
            )
            .await;
        let page = &body["data"]["projects"];
        assert_eq!(page["totalCount"], 7);
        for e in page["edges"].as_array().unwrap() {
            seen.push(e["node"]["name"].as_str().unwrap().to_owned());
        }
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn task_filters() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let me_id = my_id(&app, &t).await;
    let p1 = app.create_project(&t, "one").await;
    let p2 = app.create_project(&t, "two").await;
    create_task(
        &app,
        &t,
        json!({"projectId": p1, "title": "a", "status": "DONE", "assigneeId": me_id}),
    )
    .await;
    create_task(&app, &t, json!({"projectId": p1, "title": "b"})).await;
    create_task(
        &app,
        &t,
        json!({"projectId": p2, "title": "c", "status": "DONE"}),
    )
    .await;
    let q = "query($p: ID, $s: TaskStatus, $a: ID) { tasks(projectId: $p, status: $s, assigneeId: $a) { totalCount edges { node { title } } } }";
    let titles = |body: Value| -> Vec<String> {
        body["data"]["tasks"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(app.gql().token(&t).send(q, json!({"p": p1})).await),
        ["a", "b"]
    );
    assert_eq!(
        titles(app.gql().token(&t).send(q, json!({"s": "DONE"})).await),
        ["a", "c"]
    );
    assert_eq!(
        titles(app.gql().token(&t).send(q, json!({"a": me_id})).await),
        ["a"]
    );
    assert_eq!(
        titles(
            app.gql()
                .token(&t)
                .send(q, json!({"p": p2, "s": "TODO"}))
                .await
        ),
        Vec::<String>::new()
    );
    let nested = app
        .gql()
        .token(&t)
        .send("query($id: ID!) { project(id: $id) { tasks(status: DONE) { totalCount edges { node { title } } } } }", json!({"id": p1}))
        .await;
    assert_eq!(nested["data"]["project"]["tasks"]["totalCount"], 1);
}

const DASHBOARD: &str = "{ projects(first: 10) { totalCount edges { node { name tasks(first: 20) { totalCount edges { node { title assignee { email } project { name } } } } } } } }";

#[tokio::test]
async fn nested_lists_are_batched_not_a_query_per_row() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let me_id = my_id(&app, &t).await;
    let statements_for_dashboard = || async {
        let before = app.app.query_stats.statements();
        let body = app.gql().token(&t).send(DASHBOARD, json!({})).await;
        assert!(body["errors"].is_null(), "{body}");
        app.app.query_stats.statements() - before
    };
    let p = app.create_project(&t, "first").await;
    create_task(
        &app,
        &t,
        json!({"projectId": p, "title": "t", "assigneeId": me_id}),
    )
    .await;
    let small = statements_for_dashboard().await;
    for i in 0..6 {
        let p = app.create_project(&t, &format!("p{i}")).await;
        for j in 0..4 {
            create_task(
                &app,
                &t,
                json!({"projectId": p, "title": format!("t{j}"), "assigneeId": me_id}),
            )
            .await;
        }
    }
    let large = statements_for_dashboard().await;
    // 7 projects and 25 tasks: a statement per row would add dozens. The
    // slack covers a tenant lookup after the 1 s cache expires.
    assert!(
        large <= small + 1,
        "statements grew with rows: {small} -> {large}"
    );
    // A query's reads share one transaction: BEGIN with the binding, the
    // caller's session and permissions, projects, their count, the task
    // pages with their assignees (two), task counts, the tasks' projects,
    // COMMIT; plus a tenant lookup when the 1 s cache has expired. (21
    // when each batch ran in a transaction of its own.)
    assert!(large <= 10, "{large} statements for one dashboard query");
}

#[tokio::test]
async fn plan_project_limit_holds_under_concurrency() {
    let app = TestApp::builder().pool_size(8).spawn().await;
    let t = app.tenant_with_owner("tiny", "free").await;
    let attempts = futures::future::join_all((0..6).map(|i| {
        let app = &app;
        let t = &t;
        async move {
            app.gql()
                .token(t)
                .send(
                    "mutation($n: String!) { createProject(input: {name: $n}) { project { id } } }",
                    json!({"n": format!("p{i}")}),
                )
                .await
        }
    }))
    .await;
    let ok = attempts.iter().filter(|b| b["errors"].is_null()).count();
    let limited = attempts
        .iter()
        .filter(|b| code(b) == "PLAN_LIMIT_EXCEEDED")
        .count();
    assert_eq!(
        (ok, limited),
        (3, 3),
        "free plan allows 3 projects: {attempts:?}"
    );
    let total = app
        .gql()
        .token(&t)
        .send("{ projects { totalCount } }", json!({}))
        .await;
    assert_eq!(total["data"]["projects"]["totalCount"], 3);
}

/// A mutation's later fields see what its earlier fields changed: an
/// assignee read after a rename shows the new name, even when an earlier
/// field fetched the same user along with a page of tasks.
#[tokio::test]
async fn a_mutation_reads_its_own_changes_to_an_assignee() {
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let me_id = my_id(&app, &t).await;
    let p = app.create_project(&t, "Launch").await;
    let made = create_task(
        &app,
        &t,
        json!({"projectId": p, "title": "Write", "assigneeId": me_id}),
    )
    .await;
    assert!(made["errors"].is_null(), "{made}");
    let body = app
        .gql()
        .token(&t)
        .send(
            "mutation($p: ID!, $me: ID!) { \
               a: createTask(input: { projectId: $p, title: \"two\" }) { task { project { \
                 tasks(first: 5) { edges { node { assignee { displayName } } } } } } } \
               b: updateUser(input: { id: $me, displayName: \"Renamed\" }) { user { displayName } } \
               c: createTask(input: { projectId: $p, title: \"three\", assigneeId: $me }) { \
                 task { assignee { displayName } } } }",
            json!({ "p": p, "me": me_id }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let first = |field: &str| {
        body["data"][field]["task"]["project"]["tasks"]["edges"][0]["node"]["assignee"]
            ["displayName"]
            .clone()
    };
    assert_eq!(first("a"), json!("Owner"), "{body}");
    assert_eq!(body["data"]["b"]["user"]["displayName"], "Renamed");
    assert_eq!(
        body["data"]["c"]["task"]["assignee"]["displayName"], "Renamed",
        "{body}"
    );
}

#[tokio::test]
async fn one_page_asked_twice_in_a_batch_reaches_both_askers() {
    // Each project's page is fetched with the others the list asks in the
    // same poll of the request: here 4 asks, 2 pages. A page asked by two
    // fields, and a project with no tasks, must come out as if each were
    // fetched alone.
    let app = TestApp::spawn().await;
    let t = app.tenant_with_owner("acme", "professional").await;
    let busy = app.create_project(&t, "busy").await;
    app.create_project(&t, "empty").await;
    for title in ["one", "two", "three"] {
        create_task(&app, &t, json!({"projectId": busy, "title": title})).await;
    }
    let page = "(first: 2) { totalCount pageInfo { hasNextPage } edges { node { title } } }";
    let body = app
        .gql()
        .token(&t)
        .send(
            &format!(
                "{{ projects {{ edges {{ node {{ name a: tasks{page} b: tasks{page} }} }} }} }}"
            ),
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let busy_page = json!({
        "totalCount": 3,
        "pageInfo": {"hasNextPage": true},
        "edges": [{"node": {"title": "one"}}, {"node": {"title": "two"}}],
    });
    let empty_page = json!({"totalCount": 0, "pageInfo": {"hasNextPage": false}, "edges": []});
    let edges = body["data"]["projects"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    for edge in edges {
        let node = &edge["node"];
        let expected = if node["name"] == "busy" {
            &busy_page
        } else {
            &empty_page
        };
        assert_eq!(&node["a"], expected, "{body}");
        assert_eq!(&node["b"], expected, "{body}");
    }
}
