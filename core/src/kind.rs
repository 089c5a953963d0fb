//! The allocator variants by name, their settings, and how to build one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Addr;
use crate::allocator::Allocator;
use crate::allocators;

/// Every allocator variant heapscope models, under the name the CLI and app use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AllocatorKind {
    /// SmallWorld's `BumpAllocator`.
    Bump,
    /// SmallWorld's `CheckedBumpAllocator`.
    CheckedBump,
    /// unstack's NASM malloc: segregated bins, first fit, forward merge.
    SegregatedFit,
    /// The Nutmeg machine's heap pool (nutmeg-run).
    NutmegPool,
    /// Plywood's heap: Doug Lea's dlmalloc 2.8.6.
    Dlmalloc,
}

impl AllocatorKind {
    /// All variants, in the order the app lists them.
    pub const ALL: &'static [AllocatorKind] = &[
        AllocatorKind::Bump,
        AllocatorKind::CheckedBump,
        AllocatorKind::SegregatedFit,
        AllocatorKind::NutmegPool,
        AllocatorKind::Dlmalloc,
    ];

    /// The name used on the command line and in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            AllocatorKind::Bump => "bump",
            AllocatorKind::CheckedBump => "checked-bump",
            AllocatorKind::SegregatedFit => "segregated-fit",
            AllocatorKind::NutmegPool => "nutmeg-pool",
            AllocatorKind::Dlmalloc => "dlmalloc",
        }
    }

    /// Where the model comes from, in a few words.
    pub fn origin(self) -> &'static str {
        match self {
            AllocatorKind::Bump => "SmallWorld BumpAllocator",
            AllocatorKind::CheckedBump => "SmallWorld CheckedBumpAllocator",
            AllocatorKind::SegregatedFit => "unstack (NASM educational malloc)",
            AllocatorKind::NutmegPool => "Nutmeg machine heap (nutmeg-run)",
            AllocatorKind::Dlmalloc => "Plywood heap (dlmalloc 2.8.6)",
        }
    }

    /// Builds a fresh allocator of this kind with `config` (unset fields take the defaults).
    pub fn build(self, config: &HeapConfig) -> Result<Box<dyn Allocator>, ConfigError> {
        Ok(match self {
            AllocatorKind::Bump => Box::new(allocators::bump::Bump::from_config(config)?),
            AllocatorKind::CheckedBump => {
                Box::new(allocators::checked_bump::CheckedBump::from_config(config)?)
            }
            AllocatorKind::SegregatedFit => Box::new(
                allocators::segregated_fit::SegregatedFit::from_config(config)?,
            ),
            AllocatorKind::NutmegPool => {
                Box::new(allocators::nutmeg_pool::NutmegPool::from_config(config)?)
            }
            AllocatorKind::Dlmalloc => {
                Box::new(allocators::dlmalloc::Dlmalloc::from_config(config)?)
            }
        })
    }
}

impl fmt::Display for AllocatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AllocatorKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AllocatorKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| ConfigError::UnknownAllocator(s.to_owned()))
    }
}

// Serialised by name (`"freeing-bump"`), the same in RON scenarios, JSON and on the command line.
impl Serialize for AllocatorKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for AllocatorKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Settings shared by the allocator variants; each reads the ones it has and ignores the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeapConfig {
    /// First address of the heap (for freeing-bump: the `heap_base` offset).
    pub base: Option<Addr>,
    /// Initial size of the heap or of the memory holding it, in bytes.
    pub size: Option<u64>,
    /// Largest size the heap may grow to, in bytes.
    pub max: Option<u64>,
    /// Guard bytes after each block (checked-bump).
    pub guard_bytes: Option<u64>,
    /// Unit in which memory is obtained from the system (dlmalloc).
    pub granularity: Option<u64>,
}

/// A configuration that cannot build an allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No variant has this name.
    #[error("unknown allocator `{0}` (known: {known})", known = known_names())]
    UnknownAllocator(String),
    /// A setting is out of range for this variant.
    #[error("{kind}: {message}")]
    Invalid {
        /// The variant.
        kind: AllocatorKind,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// `kind` cannot take this setting, because `message`.
    pub fn invalid(kind: AllocatorKind, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            kind,
            message: message.into(),
        }
    }
}

fn known_names() -> String {
    AllocatorKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for &kind in AllocatorKind::ALL {
            assert_eq!(kind.name().parse::<AllocatorKind>(), Ok(kind));
            assert!(kind.build(&HeapConfig::default()).is_ok(), "{kind} builds");
        }
        let err = "tcmalloc".parse::<AllocatorKind>().unwrap_err();
        assert!(err.to_string().contains("checked-bump"), "{err}");
    }
}
