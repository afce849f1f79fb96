//! Sinks: where alert lines go. For replay that is stdout or `--output FILE`,
//! written as JSON lines in the chosen format (`AlertWriter`, here); live mode
//! uses `live` (Kafka topic, file, webhooks, dead letters).
//!
//! The writer is synchronous and buffered; the replay loop runs on a blocking
//! thread, so there is nothing to gain from async I/O here.

pub mod encode;
pub mod live;

use crate::event::{Emit, Format};
use std::io::{self, Write};

pub struct AlertWriter {
    out: Box<dyn Write + Send>,
    format: Format,
    buf: Vec<u8>,
    pub lines: u64,
}

impl AlertWriter {
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> AlertWriter {
        AlertWriter { out, format, buf: Vec::with_capacity(4096), lines: 0 }
    }

    pub fn write(&mut self, e: &Emit) -> io::Result<()> {
        self.buf.clear();
        encode::encode(self.format, &e.alert, e.kind, &mut self.buf);
        self.out.write_all(&self.buf)?;
        self.lines += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
