//! DRS response bodies on arbitrary bytes: decoding never panics, and a decoded object's
//! `validate` and `Debug` never panic either.
#![no_main]

use drs::types::{
    AccessUrl, Authorizations, BulkAccessResponse, BulkObjectResponse, DrsObject, Problem,
    ServiceInfo,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = serde_json::from_slice::<DrsObject>(data) {
        let _ = o.validate();
        let _ = format!("{o:?}");
        let _ = o.checksum("sha-256");
    }
    if let Ok(p) = serde_json::from_slice::<Problem>(data) {
        let _ = p.problem_code();
        let _ = p.message();
    }
    if let Ok(a) = serde_json::from_slice::<AccessUrl>(data) {
        let _ = format!("{a:?}");
    }
    let _ = serde_json::from_slice::<ServiceInfo>(data);
    let _ = serde_json::from_slice::<Authorizations>(data);
    let _ = serde_json::from_slice::<BulkObjectResponse>(data);
    let _ = serde_json::from_slice::<BulkAccessResponse>(data);
});
