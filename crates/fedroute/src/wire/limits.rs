//! What decoding a message may cost: [`DecodeLimits`].
//!
//! A msgpack `nil` is one byte of input, but the [`Value`] it decodes to is
//! 40 bytes of memory, and an array header of five bytes can claim four
//! billion elements. So the decoder never trusts a claim: before it
//! reserves an array, a map or a string it checks that the rest of the input
//! can hold the claimed elements (one byte each at least), and it charges
//! what the decoded tree will take against a budget that grows with the
//! input's size: [`DecodeLimits::tree_budget`]. A message whose tree would
//! cost more is refused with [`WireError::TreeTooLarge`] before anything
//! more is allocated.
//!
//! What is charged (the size of a `Value` per value, [`ALLOCATION_BYTES`] per
//! heap block, for the allocator's own bookkeeping):
//! - an array of n elements: n × 40 + 32 bytes;
//! - a map of n entries: n × 80 + 32 bytes;
//! - a string of n bytes: n + 32 bytes;
//! - `bin` and `ext` data: nothing (they are slices of the input buffer).
//!
//! The default allows 8 bytes of tree per byte of input, at least 8 MiB for
//! any message, and at most 1 GiB for one message. Messages whose size is
//! their models' bytes (`bin` values) cost a few hundred bytes of tree
//! whatever their size; the ratio matters for arrays of numbers: a float64
//! is 9 bytes of input and 40 of tree (4.4x), an integer of 65,536 or more
//! 5 and 40 (8x), which is what a Fed-BioMed node sends when it encrypts
//! its model with LOM secure aggregation (a list of 32-bit integers). What
//! 8x refuses past the floor is the attack: long arrays of `nil`s,
//! booleans or small integers (13x to 40x; 200,000 of them fit the floor),
//! and claims that no input can back. A message that needs more is refused
//! for good, with an error naming `DecodeLimits`: raise
//! `receive.decode_limits` of `ResearcherConfig` or `ControllerConfig`
//! ([`crate::config::ReceiveLimits::decode_limits`]) where such messages
//! are legitimate.
//!
//! ```
//! use bytes::Bytes;
//! use fedroute::wire::{DecodeLimits, Value, WireError};
//!
//! // An array of a million nils: 1 MB of input, 40 MB as a tree.
//! let mut nils = vec![0xdd, 0x00, 0x0f, 0x42, 0x40];
//! nils.resize(5 + 1_000_000, 0xc0);
//! let err = Value::decode_with(&Bytes::from(nils), &DecodeLimits::default()).unwrap_err();
//! assert!(matches!(err, WireError::TreeTooLarge { .. }), "{err}");
//! ```

use super::error::WireError;

/// Bytes charged per heap allocation on top of its size (the allocator's
/// header and rounding; glibc needs at most 23, and 32 for the smallest
/// blocks).
pub(super) const ALLOCATION_BYTES: usize = 32;

/// Bounds on decoding one message; see the module documentation.
///
/// ```
/// use fedroute::wire::DecodeLimits;
///
/// let limits = DecodeLimits::default();
/// // A 100-byte message may use the 8 MiB floor, a 100 MiB one 800 MiB.
/// assert_eq!(limits.tree_budget(100), 8 << 20);
/// assert_eq!(limits.tree_budget(100 << 20), 800 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting of arrays and maps. Default: 128.
    pub max_depth: usize,
    /// Bytes of tree allowed per byte of input. Default: 8.
    pub tree_bytes_per_input_byte: usize,
    /// Bytes of tree any message may use. Default: 8 MiB.
    pub tree_bytes_floor: usize,
    /// Most bytes of tree for one message, whatever its size.
    /// Default: 1 GiB.
    pub max_tree_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            tree_bytes_per_input_byte: Self::DEFAULT_TREE_BYTES_PER_INPUT_BYTE,
            tree_bytes_floor: Self::DEFAULT_TREE_BYTES_FLOOR,
            max_tree_bytes: Self::DEFAULT_MAX_TREE_BYTES,
        }
    }
}

impl DecodeLimits {
    /// Default of [`DecodeLimits::max_depth`] (128): Fed-BioMed messages
    /// nest a handful of levels; the limit keeps a hostile payload from
    /// exhausting the stack.
    pub const DEFAULT_MAX_DEPTH: usize = 128;
    /// Default of [`DecodeLimits::tree_bytes_per_input_byte`] (8; see the
    /// module documentation).
    pub const DEFAULT_TREE_BYTES_PER_INPUT_BYTE: usize = 8;
    /// Default of [`DecodeLimits::tree_bytes_floor`] (8 MiB).
    pub const DEFAULT_TREE_BYTES_FLOOR: usize = 8 << 20;
    /// Default of [`DecodeLimits::max_tree_bytes`] (1 GiB).
    pub const DEFAULT_MAX_TREE_BYTES: usize = 1 << 30;

    /// The bytes of tree a message of `input_len` bytes may decode to.
    pub fn tree_budget(&self, input_len: usize) -> usize {
        input_len
            .saturating_mul(self.tree_bytes_per_input_byte)
            .max(self.tree_bytes_floor)
            .min(self.max_tree_bytes)
    }
}

/// The decoder's running account of a tree's cost.
#[derive(Debug)]
pub(crate) struct TreeBudget {
    limit: usize,
    used: usize,
    input_len: usize,
}

impl TreeBudget {
    pub(crate) fn new(limits: &DecodeLimits, input_len: usize) -> TreeBudget {
        TreeBudget {
            limit: limits.tree_budget(input_len),
            used: 0,
            input_len,
        }
    }

    /// Charges `elements` values of `per_element` bytes plus one allocation,
    /// for the container or string that starts at `offset`.
    pub(crate) fn charge(
        &mut self,
        elements: usize,
        per_element: usize,
        offset: usize,
    ) -> Result<(), WireError> {
        if elements == 0 {
            return Ok(());
        }
        let cost = elements
            .checked_mul(per_element)
            .and_then(|c| c.checked_add(ALLOCATION_BYTES))
            .unwrap_or(usize::MAX);
        match self.used.checked_add(cost) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(WireError::TreeTooLarge {
                offset,
                needed: (self.used as u64).saturating_add(cost as u64),
                limit: self.limit,
                input: self.input_len,
            }),
        }
    }

    /// Bytes charged so far.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let DecodeLimits {
            max_depth,
            tree_bytes_per_input_byte,
            tree_bytes_floor,
            max_tree_bytes,
        } = DecodeLimits::default();
        assert_eq!(max_depth, 128);
        assert_eq!(tree_bytes_per_input_byte, 8);
        assert_eq!(tree_bytes_floor, 8 << 20);
        assert_eq!(max_tree_bytes, 1 << 30);
        assert_eq!(
            crate::config::fields_without_default(include_str!("limits.rs")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_budget_grows_with_the_input_between_the_floor_and_the_cap() {
        let l = DecodeLimits::default();
        assert_eq!(crate::wire::value::TREE_NODE_BYTES, 40);
        assert_eq!(l.tree_budget(0), 8 << 20);
        assert_eq!(l.tree_budget(2 << 20), 16 << 20);
        assert_eq!(l.tree_budget(usize::MAX), 1 << 30);
    }

    #[test]
    fn charges_add_up_and_overflow_is_refused() {
        let l = DecodeLimits {
            tree_bytes_floor: 1000,
            ..DecodeLimits::default()
        };
        let mut b = TreeBudget::new(&l, 10);
        b.charge(0, 40, 0).unwrap();
        assert_eq!(b.used(), 0);
        b.charge(10, 40, 0).unwrap();
        assert_eq!(b.used(), 432);
        let e = b.charge(usize::MAX, 80, 7).unwrap_err();
        assert!(matches!(
            e,
            WireError::TreeTooLarge {
                offset: 7,
                limit: 1000,
                input: 10,
                ..
            }
        ));
        // The refused charge left the account as it was.
        b.charge(13, 40, 0).unwrap();
        assert_eq!(b.used(), 432 + 552);
    }
}
