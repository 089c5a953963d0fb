//! The allocator models, one per file.

pub mod bump;
pub mod checked_bump;
pub mod dlmalloc;
pub mod nutmeg_pool;
pub mod segregated_fit;
