//! Embeds `tenant_template/NNNN_name/up.sql` into the binary, in order.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time: a build script binary can be reused across checkouts
    // sharing one target directory.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("tenant_template");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut steps: Vec<(u32, String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tenant_template/ exists") {
        let entry = entry.expect("readable tenant_template entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() {
            continue;
        }
        let (num, _) = name
            .split_once('_')
            .unwrap_or_else(|| panic!("tenant_template/{name}: expected NNNN_name"));
        let version: u32 = num
            .parse()
            .unwrap_or_else(|_| panic!("tenant_template/{name}: expected a number before '_'"));
        let up = entry.path().join("up.sql");
        assert!(up.is_file(), "tenant_template/{name}/up.sql is missing");
        println!("cargo:rerun-if-changed={}", up.display());
        steps.push((version, name, up));
    }
    steps.sort();
    for (i, (version, name, _)) in steps.iter().enumerate() {
        assert_eq!(
            *version as usize,
            i + 1,
            "tenant_template/{name}: versions must run 1, 2, 3 ... without gaps"
        );
    }
    let mut out = String::from("&[\n");
    for (version, name, path) in &steps {
        writeln!(
            out,
            "    TemplateStep {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("tenant_template.rs");
    std::fs::write(dest, out).unwrap();
}
