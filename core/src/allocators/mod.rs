//! The allocator models, one per file.

pub mod bump;
pub mod checked_bump;
pub mod freeing_bump;
