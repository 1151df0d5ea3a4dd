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
