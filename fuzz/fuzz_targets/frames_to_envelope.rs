//! The receive path as the researcher and the node run it: the input is cut
//! into frames by a fuzzed split, the frames go through `wire::Reassembler`,
//! and every payload it yields goes through `Envelope::decode` and the
//! version check. Oracle: no panic, and a payload cut by `wire::chunks_of`
//! reassembles to itself.
#![no_main]

use bytes::Bytes;
use fedroute::wire::{Envelope, Reassembler, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = (data[0] as usize % 64) + 1;
    let payload = Bytes::copy_from_slice(&data[1..]);
    // Above any input (-max_len is 4 MiB): well-formed frames must pass.
    let mut r = Reassembler::new(8 << 20);
    let mut out = None;
    for f in Frame::split_by(payload.clone(), chunk) {
        if let Some(p) = r
            .push(f.size, f.iteration, f.bytes)
            .expect("well-formed frames refused")
        {
            out = Some(p);
        }
    }
    let out = out.expect("no payload after the last frame");
    assert_eq!(out, payload);
    if let Ok(env) = Envelope::decode(out) {
        let _ = env.check_version();
    }
});
