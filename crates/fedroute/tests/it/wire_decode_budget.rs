//! Decoding allocates at most what `DecodeLimits` allows, whatever the
//! input claims: checked with a counting allocator on structure-aware
//! hostile msgpack (extreme claimed lengths of arrays, maps, strings and
//! bins, deep nesting, long strings, runs of nils) from a proptest
//! strategy, and on a few fixed worst cases.
//!
//! The bound: the peak of bytes allocated while decoding a message of N
//! bytes stays under `DecodeLimits::tree_budget(N)` plus [`OVERHEAD`] (the
//! error value, the decoder's own state); the tree that results is within
//! the budget too.

use bytes::Bytes;
use fedroute::wire::{DecodeLimits, Value};
use proptest::prelude::*;

/// Bytes decoding may allocate besides the tree (errors, bookkeeping).
const OVERHEAD: usize = 16 << 10;

/// The peak bytes allocated while decoding `input` with `limits`, and
/// whether it decoded.
fn peak_decoding(input: &Bytes, limits: &DecodeLimits) -> (usize, bool) {
    let (ok, seen) = fedroute_testkit::alloc::measure(|| Value::decode_with(input, limits).is_ok());
    (seen.peak, ok)
}

/// A msgpack header claiming `n` items of `kind`, with its marker.
fn header(kind: u8, n: u32) -> Vec<u8> {
    match kind % 6 {
        0 => [vec![0xdd], n.to_be_bytes().to_vec()].concat(), // array32
        1 => [vec![0xdf], n.to_be_bytes().to_vec()].concat(), // map32
        2 => [vec![0xdb], n.to_be_bytes().to_vec()].concat(), // str32
        3 => [vec![0xc6], n.to_be_bytes().to_vec()].concat(), // bin32
        4 => [vec![0xdc], (n as u16).to_be_bytes().to_vec()].concat(), // array16
        _ => [vec![0xde], (n as u16).to_be_bytes().to_vec()].concat(), // map16
    }
}

/// Pieces of hostile msgpack, concatenated by [`hostile`].
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let claim = prop_oneof![
        Just(u32::MAX),
        Just(u32::MAX / 40),
        Just(1 << 24),
        0u32..70_000,
    ];
    prop_oneof![
        // A claimed length, at the extremes or not.
        (any::<u8>(), claim).prop_map(|(k, n)| header(k, n)),
        // Deep nesting of one-element arrays or maps.
        (1usize..400, any::<bool>()).prop_map(|(d, maps)| {
            if maps {
                [0x81u8, 0xa1, b'k'].repeat(d)
            } else {
                vec![0x91; d]
            }
        }),
        // A run of nils, small integers or booleans (one byte each).
        (
            1usize..200_000,
            prop_oneof![Just(0xc0u8), Just(0x01), Just(0xc3)]
        )
            .prop_map(|(n, b)| vec![b; n]),
        // A long string, whole.
        (0usize..300_000).prop_map(|n| {
            let mut v = vec![0xdb];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v.resize(5 + n, b'x');
            v
        }),
        // Arbitrary bytes.
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Hostile msgpack: an array header claiming the pieces, then the pieces.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        any::<u32>(),
        proptest::collection::vec(piece(), 1..8),
    )
        .prop_map(|(k, n, pieces)| {
            let mut out = header(k, n);
            for p in pieces {
                out.extend(p);
            }
            out
        })
}

/// Checks the bound on `input` with the default limits and a small floor.
fn within_budget(input: &Bytes) -> Result<(), String> {
    for limits in [
        DecodeLimits::default(),
        DecodeLimits {
            tree_bytes_floor: 4096,
            ..DecodeLimits::default()
        },
    ] {
        let budget = limits.tree_budget(input.len());
        let (peak, _) = peak_decoding(input, &limits);
        if peak > budget + OVERHEAD {
            return Err(format!(
                "{} input bytes: {peak} bytes allocated, budget {budget}",
                input.len()
            ));
        }
    }
    Ok(())
}

/// One test function: the allocation counters are global, so nothing else
/// may run meanwhile.
#[test]
fn decoding_allocates_no_more_than_the_tree_budget() {
    let limits = DecodeLimits::default();
    // (what, input, whether it decodes)
    let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    let mut nils = header(0, 20_000_000);
    nils.resize(5 + 20_000_000, 0xc0);
    cases.push(("20 MB of nils claimed exactly", nils, false));
    let mut claim = header(0, u32::MAX);
    claim.resize(5 + 20_000_000, 0xc0);
    cases.push(("4 G nils claimed, 20 MB sent", claim, false));
    let mut ints = header(0, 4_000_000);
    for i in 0..4_000_000u32 {
        ints.push(0xce);
        ints.extend_from_slice(&(70_000 + i).to_be_bytes());
    }
    cases.push(("4 M 32-bit integers (8x)", ints, true));
    let mut maps = header(1, 2_000_000);
    for _ in 0..2_000_000 {
        maps.extend_from_slice(&[0xa1, b'k', 0xc0]);
    }
    cases.push(("2 M map entries of one-byte keys", maps, false));
    for (what, case, decodes) in cases {
        let input = Bytes::from(case);
        let budget = limits.tree_budget(input.len());
        let (peak, ok) = peak_decoding(&input, &limits);
        eprintln!(
            "wire_decode_budget: {what}: {} input bytes, {peak} allocated (budget {budget}), decoded: {ok}",
            input.len()
        );
        assert!(peak <= budget + OVERHEAD, "{what}: {peak} > {budget}");
        assert_eq!(ok, decodes, "{what}");
    }

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    runner
        .run(&hostile(), |input| {
            within_budget(&Bytes::from(input)).map_err(TestCaseError::fail)
        })
        .unwrap();
}
