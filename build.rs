//! Build script: with the `python` feature, let the binary find the libpython it links
//! against at run time (an rpath to the interpreter's LIBDIR), without LD_LIBRARY_PATH.
//! Without the feature it does nothing.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let libdir = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if !libdir.is_empty() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
            }
        }
        _ => println!("cargo:warning=cannot run {python} to find its LIBDIR: no rpath set"),
    }
}
