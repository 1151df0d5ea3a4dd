//! The built-in PostgreSQL's data directory.

use strata::db::embedded::{EmbeddedPostgres, Options};

#[test]
fn second_server_on_one_data_directory_is_refused_cleanly() {
    let dir = std::env::temp_dir().join(format!("strata-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options {
        data_dir: dir.clone(),
        ephemeral: true,
    };
    let first = EmbeddedPostgres::start(&opts).expect("first start");
    assert!(first.fresh);
    let err = EmbeddedPostgres::start(&opts).expect_err("second start must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("in use by another strata process"), "{msg}");
    // The first cluster is untouched and still answers.
    let url = first.url("postgres");
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    first.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The built-in cluster's shared buffers, in 8 kB pages.
async fn shared_buffer_pages(pg: &EmbeddedPostgres) -> i64 {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl as _;
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pages: i64,
    }
    let mut conn =
        strata::db::connect_with_retry(&pg.url("postgres"), std::time::Duration::from_secs(30))
            .await
            .unwrap();
    diesel::sql_query(
        "SELECT setting::bigint AS pages FROM pg_settings WHERE name = 'shared_buffers'",
    )
    .get_result::<Setting>(&mut conn)
    .await
    .unwrap()
    .pages
}

#[tokio::test]
async fn durable_cluster_is_sized_to_memory_once_and_keeps_an_operators_edit() {
    let dir = std::env::temp_dir().join(format!("strata-sized-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options {
        data_dir: dir.clone(),
        ephemeral: false,
    };
    let start = |opts: Options| async move {
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts))
            .await
            .unwrap()
            .expect("start")
    };
    let pg = start(opts.clone()).await;
    let mb = strata::db::embedded::shared_buffers_mb();
    assert_eq!(shared_buffer_pages(&pg).await, mb as i64 * 128);
    tokio::task::spawn_blocking(move || pg.stop().unwrap())
        .await
        .unwrap();

    // An operator lowers it; the next start keeps their value and adds nothing.
    let conf_path = dir.join("pg/postgresql.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let edited = conf.replace(
        &format!("shared_buffers = '{mb}MB'"),
        "shared_buffers = '64MB'",
    );
    assert_ne!(conf, edited, "the sized setting is in postgresql.conf");
    std::fs::write(&conf_path, &edited).unwrap();
    let pg = start(opts).await;
    assert_eq!(shared_buffer_pages(&pg).await, 64 * 128);
    assert_eq!(std::fs::read_to_string(&conf_path).unwrap(), edited);
    tokio::task::spawn_blocking(move || pg.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
