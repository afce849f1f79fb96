//! Sources: where records come from. `replay` reads archived files; `kafka`
//! builds the live consumers; `intake` receives and decodes their messages on
//! a thread of its own; `merge` orders live login records by event time;
//! `ledger` tracks which offsets may be stored. Both feed the same pipeline.

pub mod intake;
pub mod kafka;
pub mod ledger;
pub mod merge;
pub mod replay;
