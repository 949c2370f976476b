//! Insert bodies: parsing and validation must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn schema() -> &'static store::schema::TableSchema {
    static S: OnceLock<store::schema::TableSchema> = OnceLock::new();
    S.get_or_init(|| {
        let def = serde_json::json!({"id_type": "textual", "properties": [
            {"name": "s", "type": "text"}, {"name": "n", "type": "int"}, {"name": "d", "type": "double"},
            {"name": "b", "type": "bool"}, {"name": "t", "type": "text", "is_set": true},
            {"name": "c", "type": "int", "is_customer": true}
        ]});
        store::schema::parse_create_body("t", 1, &def).expect("schema")
    })
}

fuzz_target!(|data: &[u8]| {
    for ndjson in [false, true] {
        if let Ok(raw) = store::ingest::parse_body(data, ndjson) {
            let v = store::ingest::validate(schema(), raw, store::ingest::UnknownPolicy::Reject, 1, 4);
            for (_, entry) in &v.entries {
                let (_, records) = store::codec::decode_entry(entry).expect("own entries decode");
                assert!(!records.is_empty());
            }
        }
    }
});
