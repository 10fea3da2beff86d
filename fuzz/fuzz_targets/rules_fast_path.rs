//! The YAML fast path against saphyr on arbitrary text: whenever the fast
//! path takes the text, its tree must be saphyr's, values and positions;
//! and `portgate::rules::load` must answer the same (ruleset and warnings,
//! or every diagnostic) with and without it. The seeds are the rules files
//! and permit-file shapes; the dictionary is the permit file's words.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = portgate::rules::differential::check(text) {
        panic!("{e}");
    }
});
