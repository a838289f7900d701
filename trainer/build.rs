//! Embeds the run-time search path of libtorch (and the CUDA runtime libraries libtorch_cpu
//! links against) into the binaries, so users need no LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(lt) = std::env::var("LIBTORCH") {
        let lt = std::fs::canonicalize(&lt).unwrap_or_else(|_| lt.into());
        let lib = lt.join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // The PyPI wheels put the CUDA runtime beside torch: site-packages/nvidia/*/lib.
        if let Some(site) = lt.parent()
            && let Ok(entries) = std::fs::read_dir(site.join("nvidia"))
        {
            for e in entries.flatten() {
                let l = e.path().join("lib");
                if l.is_dir() {
                    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", l.display());
                }
            }
        }
    }
}
