use std::path::PathBuf;

/// `../shared/conformance` beside the checkout (or `SALVE_CONFORMANCE`). Missing data is a test
/// failure, not a skip: the conformance suite is what these tests exist for.
pub fn conformance_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SALVE_CONFORMANCE") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    assert!(
        dir.is_dir(),
        "conformance data not found at {}; check out shared/ beside the repository or set SALVE_CONFORMANCE",
        dir.display()
    );
    dir
}
