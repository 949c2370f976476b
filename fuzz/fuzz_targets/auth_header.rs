//! `Authorization` headers and bearer tokens: checking must never panic and
//! never accept anything not issued by the store.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static STORE: OnceLock<auth::AuthStore> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let store = STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("openset-fuzz-auth-{}", std::process::id()));
        let s = auth::AuthStore::open(&dir, true, std::time::Duration::from_secs(3600))
            .expect("store");
        let _ = s.register("root", "rootpass1", auth::Role::SuperUser, None);
        s
    });
    assert!(store.check_token(text).is_err(), "accepted a forged token");
    // Basic runs argon2 (slow by design); fuzz only the other schemes here.
    if !text.trim_start().to_ascii_lowercase().starts_with("basic") {
        assert!(store.authenticate(text).is_err());
    }
});
