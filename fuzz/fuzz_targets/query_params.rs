//! Query strings: parsing parameters must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = server::params::Params::parse(Some(text)) {
        for name in ["debug", "partial", "trim", "partitions", "segments"] {
            let _ = p.bool(name, false);
            let _ = p.int(name);
        }
        let _ = p.iter().count();
    }
});
