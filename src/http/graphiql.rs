//! GraphiQL at `/`, from assets built into the binary (so it works offline),
//! or from `STRATA_GRAPHIQL_DIR` when set.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;

/// The pinned versions (see `scripts/fetch-graphiql.sh`).
pub const GRAPHIQL_VERSION: &str = "3.8.3";

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The GraphiQL page.
pub async fn page() -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Strata GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="generator" content="graphiql {GRAPHIQL_VERSION}">
  <link rel="stylesheet" href="/graphiql/graphiql.min.css">
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/react.production.min.js"></script>
  <script src="/graphiql/react-dom.production.min.js"></script>
  <script src="/graphiql/graphiql.min.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({{ url: '/graphql' }});
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {{
        fetcher,
        defaultEditorToolsVisibility: true,
        defaultHeaders: JSON.stringify({{ "X-Tenant": "acme" }}, null, 2),
        shouldPersistHeaders: true,
      }}),
    );
  </script>
</body>
</html>"#
    ))
}

/// One GraphiQL asset.
pub async fn asset(State(app): State<Arc<App>>, Path(file): Path<String>) -> Response {
    let Some((name, mime, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match &app.config.graphiql_dir {
        Some(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "GraphiQL asset not in STRATA_GRAPHIQL_DIR");
                return StatusCode::NOT_FOUND.into_response();
            }
        },
        None => bytes.to_vec(),
    };
    (
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
