//! The server's module graph flows one way: routes use the modules beside them, never the
//! reverse. A module that two routes need is not a route (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn server_structure_no_module_outside_routes_imports_a_route() {
    // Read when the test runs, not baked in when it was built: a build cached from another
    // checkout of the same sources would otherwise look for that checkout.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let src = Path::new(&manifest).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let mut offenders = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative == "routes.rs" || relative.starts_with("routes/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // lib.rs declares the module and re-exports the router: that is the one way in.
            if relative == "lib.rs" && matches!(code.trim(), "mod routes;" | "pub use routes::app;")
            {
                continue;
            }
            if code.contains("routes::") || code.contains("mod routes") {
                offenders.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "modules outside routes/ import routes:\n{}",
        offenders.join("\n")
    );
}
