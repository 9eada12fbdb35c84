//! The protocol crate stays free of I/O: no async runtime, no TLS, no
//! sockets, no files. Checked two ways, so that neither a new dependency
//! nor a stray `use` slips in: the crate's normal dependency tree (from
//! cargo itself) holds only the allowed crates, and no source file names
//! an I/O module. (`std::net`'s address *types* are values, not sockets:
//! `Ipv4Addr`/`Ipv6Addr` parse address literals.)

use std::path::Path;
use std::process::Command;

/// The only crates the protocol crate may depend on (normal and build
/// dependencies, transitively). memchr is byte search in memory (DATA
/// framing's CR/LF scan), nothing more.
const ALLOWED: &[&str] = &["postrelay-smtp", "base64", "memchr"];

#[test]
fn dependency_tree_has_no_runtime_tls_or_sockets() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "postrelay-smtp", "-e", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"postrelay-smtp"), "{tree}");
    for c in &crates {
        assert!(
            ALLOWED.contains(c),
            "postrelay-smtp must stay sans-IO, but depends on {c}:\n{tree}"
        );
    }
}

#[test]
fn no_source_file_uses_io() {
    let forbidden = [
        "tokio",
        "rustls",
        "std::io",
        "std::fs",
        "std::thread",
        "std::process",
        "TcpStream",
        "UdpSocket",
        "TcpListener",
        "UnixStream",
    ];
    let mut files = Vec::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 5, "no sources found: {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} mentions {word}: the protocol crate takes bytes and returns values",
                f.display()
            );
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}
