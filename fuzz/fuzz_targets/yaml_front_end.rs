//! Any bytes as a pipeline file, in both modes: never a panic, every diagnostic has a position.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use salve_pipeline::{Mode, NoFiles, analyze};

fuzz_target!(|data: &[u8]| {
    let mut params = BTreeMap::new();
    params.insert("ENV".to_owned(), "prod".to_owned());
    for mode in [Mode::Lint, Mode::Compile] {
        let a = analyze(".semaphore/semaphore.yml", data, &NoFiles, &params, mode);
        for d in &a.diagnostics {
            assert!(d.line >= 1, "diagnostic without a line: {d:?}");
        }
    }
});
