//! The allocator models, one per file.

pub mod bump;
pub mod checked_bump;
pub mod segregated_fit;
pub mod nutmeg_pool;
pub mod dlmalloc;
