//! Embeds the shipped profiles (profiles/*.toml) into the crate, so a binary copied anywhere
//! (or into a container image) loads `--profile lan` without the source tree.

use std::io::Write as _;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| {
                    let stem = p.file_stem()?.to_str()?.to_string();
                    Some((stem, p))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// (name, TOML text) of every shipped profile, embedded at build time.\npub const SHIPPED_PROFILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &names {
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let target = std::path::Path::new(&out_dir).join("shipped_profiles.rs");
    let written = std::fs::File::create(&target).and_then(|mut f| f.write_all(out.as_bytes()));
    if let Err(e) = written {
        panic!("writing {}: {e}", target.display());
    }
}
