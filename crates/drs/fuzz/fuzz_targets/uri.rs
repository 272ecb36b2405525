//! `drs://` parsing on arbitrary text: no panic; whatever parses prints back to an equal value;
//! the object URL's id part is one path segment (no `/`, `?`, `#`, dot segments).
#![no_main]

use drs::uri::{DrsUri, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for opts in [
        ParseOptions::default(),
        ParseOptions {
            allow_port: true,
            allow_http: true,
        },
    ] {
        for input in [text.to_owned(), format!("drs://{text}")] {
            let Ok(uri) = DrsUri::parse(&input, &opts) else {
                continue;
            };
            let again = DrsUri::parse(&uri.to_string(), &opts).expect("display re-parses");
            assert_eq!(again, uri);
            if let Ok(url) = uri.object_url() {
                let (_, id) = url.rsplit_once("/objects/").expect("object path");
                assert!(!id.contains(['/', '?', '#']) && id != "." && id != "..");
            }
        }
    }
});
