//! Sources: where records come from. `replay` reads archived files; a live
//! Kafka source will sit beside it and feed the same pipeline.

pub mod replay;
