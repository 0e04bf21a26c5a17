//! The experiment spec loader: any bytes give a spec or located
//! diagnostics, never a panic, and the diagnostics render.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = pipeline_fuzz::text_of(data) else {
        return;
    };
    let path = Path::new("experiments/fuzz.yaml");
    if let Err(diagnostics) = pipeline::spec::parse_spec(&text, path) {
        for diagnostic in &diagnostics {
            let _ = diagnostic.render(Some(&text));
        }
    }
    // workload.yaml shares the loader, with other types.
    let _ = pipeline::spec::parse_workload_manifest(&text, Path::new("workload.yaml"));
});
