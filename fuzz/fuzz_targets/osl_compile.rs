//! The OSL front end and compiler must never panic, whatever the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = osl::Schema {
        props: vec![
            osl::PropDef { name: "product_name".into(), kind: osl::PropKind::Text, is_set: false, is_customer: false, index: 0 },
            osl::PropDef { name: "price".into(), kind: osl::PropKind::Double, is_set: false, is_customer: false, index: 1 },
            osl::PropDef { name: "tags".into(), kind: osl::PropKind::Text, is_set: true, is_customer: false, index: 2 },
            osl::PropDef { name: "age".into(), kind: osl::PropKind::Int, is_set: false, is_customer: true, index: 3 },
        ],
        numeric_ids: false,
    };
    let params = osl::Params::new().with("x", osl::Value::Int(1));
    if let Ok(program) = osl::compile(text, &schema, &params) {
        let _ = program.debug_listing();
    }
    let _ = osl::substitute_templates(text, &params);
    let _ = osl::parse_sections(text);
});
