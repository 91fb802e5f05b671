//! The in-memory backend: maps behind a lock, for tests and throwaway
//! servers; everything is gone when the process ends. No schema, so no
//! migrations.

mod events;
mod jobs;
mod limits;

pub use events::MemoryEventStore;
pub use jobs::MemoryJobStore;
pub use limits::TokenBuckets;
