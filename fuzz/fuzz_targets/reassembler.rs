//! Fuzzes `wire::Reassembler` with arbitrary frame sequences.
//!
//! Input layout: repeated records `size: i32 LE, iteration: i32 LE, len: u8, bytes[len]`
//! (a short tail is used as the last frame's bytes). The oracle keeps its own
//! copy of the frames since the current message began and checks:
//! - no panic, no allocation beyond the limit (the limit is small here);
//! - every payload returned equals the concatenation of the frames of its message;
//! - every payload is at most the limit;
//! - after an error the reassembler has no message in progress.
#![no_main]

use bytes::Bytes;
use fedroute::wire::Reassembler;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(LIMIT);
    let mut expected: Vec<u8> = Vec::new();
    let mut rest = data;
    while rest.len() >= 9 {
        let size = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let iteration = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let len = rest[8] as usize;
        rest = &rest[9..];
        let take = len.min(rest.len());
        let frame = &rest[..take];
        rest = &rest[take..];
        let was_in_progress = r.in_progress();
        match r.push(size, iteration, Bytes::copy_from_slice(frame)) {
            Ok(Some(payload)) => {
                expected.extend_from_slice(frame);
                assert!(payload.len() <= LIMIT, "payload above the limit");
                assert_eq!(
                    &payload[..],
                    &expected[..],
                    "payload is not the frames joined"
                );
                assert!(!r.in_progress(), "in progress after a complete message");
                assert_eq!(iteration, size, "message completed before its last frame");
                expected.clear();
            }
            Ok(None) => {
                if !was_in_progress {
                    expected.clear();
                }
                expected.extend_from_slice(frame);
                assert!(r.in_progress(), "a partial message is not in progress");
                assert!(expected.len() <= LIMIT, "accepted frames above the limit");
            }
            Err(_) => {
                assert!(!r.in_progress(), "still in progress after an error");
                expected.clear();
            }
        }
    }
    let in_progress = r.in_progress();
    assert_eq!(r.finish().is_err(), in_progress);
    assert!(!r.in_progress());
});
