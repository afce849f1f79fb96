//! Sources: where records come from. `replay` reads archived files; `kafka`
//! builds the live consumers; `merge` orders live records by event time and
//! tracks which offsets may be stored. Both feed the same pipeline.

pub mod kafka;
pub mod merge;
pub mod replay;
