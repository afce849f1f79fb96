//! A small validating, lazy JSON reader for the decode hot path.
//!
//! It owns one job: turn a UTF-8 JSON text into borrowed views (`Val`) without
//! building a tree. Objects and arrays are validated once when they are skipped
//! and handed back as raw slices, so a decoder pays only for the fields it reads.
//! Strings are unescaped only when a caller asks for them.
//!
//! Why not `serde_json::Value`: a replay archive is ~1 KB per record and the
//! target is a million records a second on two cores. Building a map of ~40
//! owned strings per record costs more than the whole budget; this reader does
//! one pass with `memchr` over string bodies and allocates nothing for records
//! whose strings carry no escapes. `serde_json` is still used to *write* alerts.
//!
//! Grammar is RFC 8259: strict numbers, no trailing commas, no comments, raw
//! control characters rejected inside strings, nesting capped at `MAX_DEPTH`
//! so hostile input cannot overflow the stack.

use std::borrow::Cow;
use std::ops::ControlFlow;

/// Deepest nesting accepted; real Salesforce shapes nest at most four levels.
const MAX_DEPTH: usize = 64;

/// Why a text is not acceptable JSON. `offset` is a byte offset into the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct JsonError {
    pub kind: &'static str,
    pub offset: usize,
}

/// A JSON string, still in its escaped wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JStr<'a> {
    /// The decoded string; borrows when the wire form had no escapes.
    #[inline]
    pub fn value(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Compares with a plain key without allocating in the common case.
    pub fn eq_str(&self, other: &str) -> bool {
        if self.escaped {
            self.value() == other
        } else {
            self.raw == other
        }
    }
}

/// One JSON value, viewed lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// The number's literal text, validated against the JSON grammar.
    Num(&'a str),
    Str(JStr<'a>),
    /// A validated object, braces included.
    Obj(&'a str),
    /// A validated array, brackets included.
    Arr(&'a str),
}

impl<'a> Val<'a> {
    /// The value as text: strings decoded, numbers and booleans as written.
    /// `null` and containers give `None`.
    #[inline]
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s.value()),
            Val::Num(n) => Some(Cow::Borrowed(n)),
            Val::Bool(true) => Some(Cow::Borrowed("true")),
            Val::Bool(false) => Some(Cow::Borrowed("false")),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<Object<'a>> {
        match self {
            Val::Obj(s) => Object::parse(s).ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Arr(s) => parse_array_items(s).ok(),
            _ => None,
        }
    }

    /// The member tag this value is stored under.
    fn tag(&self) -> u8 {
        match self {
            Val::Null => TAG_NULL,
            Val::Bool(false) => TAG_FALSE,
            Val::Bool(true) => TAG_TRUE,
            Val::Num(_) => TAG_NUM,
            Val::Str(_) => TAG_STR,
            Val::Obj(_) => TAG_OBJ,
            Val::Arr(_) => TAG_ARR,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Obj(_) => "object",
            Val::Arr(_) => "array",
        }
    }
}

/// The members of one object, in wire order.
///
/// Members are stored compactly as offsets into the object's text (20 bytes
/// each), and `slots` indexes them by a one-byte key hash, so a lookup, present
/// or absent (the common case while detecting a record's shape), usually costs
/// one table read and one comparison instead of a scan.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    text: &'a str,
    members: Vec<Member>,
    /// Key hash → 1 + index of the last member with that hash (0: none); members
    /// with the same hash are chained through `Member::next`.
    /// Boxed (and pooled) so that an `Object` is small to move; `None` only
    /// once dropped.
    slots: Option<Box<[u8; 256]>>,
    /// An escaped key or more than 255 members: look up by scanning.
    scan_only: bool,
}

/// One member as offsets into the object text.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: u32,
    key_len: u32,
    val: u32,
    val_len: u32,
    tag: u8,
    key_escaped: bool,
    val_escaped: bool,
    /// 1 + index of the previous member whose key has the same hash (0: none).
    next: u8,
}

impl Member {
    /// A member of a plain text (no escapes).
    #[inline(always)]
    fn plain(key: u32, key_len: u32, val: u32, val_len: u32, tag: u8, next: u8) -> Member {
        Member { key, key_len, val, val_len, tag, key_escaped: false, val_escaped: false, next }
    }
}

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_NUM: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_OBJ: u8 = 5;
const TAG_ARR: u8 = 6;

thread_local! {
    /// Member storage, handed back by each dropped `Object` so that the hot
    /// path does not allocate a vector per record.
    static MEMBERS: std::cell::Cell<Vec<Member>> = const { std::cell::Cell::new(Vec::new()) };
    /// The same for the key-hash table.
    static SLOTS: std::cell::Cell<Option<Box<[u8; 256]>>> = const { std::cell::Cell::new(None) };
}

impl Drop for Object<'_> {
    fn drop(&mut self) {
        if self.members.capacity() > 0 {
            MEMBERS.set(std::mem::take(&mut self.members));
        }
        if let Some(slots) = self.slots.take() {
            SLOTS.set(Some(slots));
        }
    }
}

/// A key's hash from its length and its first and last bytes. An empty key
/// uses the quotes around it (`"`), so the parser can hash straight from the
/// text without a branch on the length.
#[inline]
fn key_hash(k: &[u8]) -> u8 {
    key_hash_parts(k.len(), *k.first().unwrap_or(&b'"'), *k.last().unwrap_or(&b'"'))
}

#[inline(always)]
fn key_hash_parts(len: usize, first: u8, last: u8) -> u8 {
    (len as u8).wrapping_mul(31) ^ first.wrapping_mul(7) ^ last.rotate_left(3)
}

impl<'a> Object<'a> {
    /// Parses one object text (braces included) into its members.
    pub fn parse(text: &'a str) -> Result<Self, JsonError> {
        if text.len() > u32::MAX as usize {
            return Err(JsonError { kind: "object larger than 4 GiB", offset: 0 });
        }
        let base = text.as_ptr() as usize;
        let off = |s: &str| (s.as_ptr() as usize).wrapping_sub(base) as u32;
        let mut p = Parser::new(text);
        p.skip_ws();
        let mut members = MEMBERS.take();
        members.clear();
        let mut slots = SLOTS.take().unwrap_or_else(|| Box::new([0; 256]));
        slots.fill(0);
        let mut scan_only = false;
        if p.plain {
            p.plain_members::<true>(1, &mut members, &mut slots)?;
            p.skip_ws();
            if p.pos != p.bytes.len() {
                return Err(p.err("trailing characters after object"));
            }
            scan_only = members.len() > 255;
            return Ok(Object { text, members, slots: Some(slots), scan_only });
        }
        p.object_inner(1, &mut |k: JStr<'a>, v: Val<'a>| {
            let tag = v.tag();
            let (raw, val_escaped) = match v {
                Val::Null | Val::Bool(_) => ("", false),
                Val::Num(n) | Val::Obj(n) | Val::Arr(n) => (n, false),
                Val::Str(s) => (s.raw, s.escaped),
            };
            let i = members.len();
            let mut next = 0;
            if k.escaped || i >= 255 {
                scan_only = true;
            } else {
                let slot = &mut slots[usize::from(key_hash(k.raw.as_bytes()))];
                next = *slot;
                *slot = i as u8 + 1;
            }
            members.push(Member {
                next,
                key: off(k.raw),
                key_len: k.raw.len() as u32,
                val: if raw.is_empty() { 0 } else { off(raw) },
                val_len: raw.len() as u32,
                tag,
                key_escaped: k.escaped,
                val_escaped,
            });
            ControlFlow::Continue(())
        })?;
        p.skip_ws();
        if p.pos != p.bytes.len() {
            return Err(p.err("trailing characters after object"));
        }
        Ok(Object { text, members, slots: Some(slots), scan_only })
    }

    /// The text at a member's offsets.
    #[inline(always)]
    fn slice(&self, at: u32, len: u32) -> &'a str {
        let (at, end) = (at as usize, at as usize + len as usize);
        debug_assert!(self.text.is_char_boundary(at) && self.text.is_char_boundary(end));
        // SAFETY: members are recorded by the parser from this text, and every
        // offset is next to an ASCII delimiter (a quote, `:`, `,`, a brace) or
        // at the start or end of a number or literal, so both ends are in
        // bounds and on character boundaries of this valid UTF-8 text.
        unsafe { self.text.get_unchecked(at..end) }
    }

    #[inline]
    fn raw_key(&self, m: &Member) -> &'a str {
        self.slice(m.key, m.key_len)
    }

    fn key(&self, m: &Member) -> JStr<'a> {
        JStr { raw: self.raw_key(m), escaped: m.key_escaped }
    }

    #[inline]
    fn value(&self, m: &Member) -> Val<'a> {
        let raw = self.slice(m.val, m.val_len);
        match m.tag {
            TAG_NULL => Val::Null,
            TAG_FALSE => Val::Bool(false),
            TAG_TRUE => Val::Bool(true),
            TAG_NUM => Val::Num(raw),
            TAG_STR => Val::Str(JStr { raw, escaped: m.val_escaped }),
            TAG_OBJ => Val::Obj(raw),
            _ => Val::Arr(raw),
        }
    }

    /// The member with this key; with duplicate keys the last wins, as in serde_json.
    #[inline(always)]
    fn find(&self, key: &str) -> Option<&Member> {
        if self.scan_only {
            return self.members.iter().rev().find(|m| self.key(m).eq_str(key));
        }
        let key = key.as_bytes();
        let mut i = usize::from(self.slots.as_ref().map_or(0, |s| s[usize::from(key_hash(key))]));
        while let Some(m) = i.checked_sub(1).and_then(|i| self.members.get(i)) {
            if m.key_len as usize == key.len() && same_bytes(self.raw_key(m).as_bytes(), key) {
                return Some(m);
            }
            i = usize::from(m.next);
        }
        None
    }

    /// The member with this key; with duplicate keys the last wins, as in serde_json.
    #[inline(always)]
    pub fn get(&self, key: &str) -> Option<Val<'a>> {
        self.find(key).map(|m| self.value(m))
    }

    /// A member's text, with blank strings treated as absent.
    #[inline]
    pub fn text(&self, key: &str) -> Option<Cow<'a, str>> {
        let m = self.find(key)?;
        if m.tag == TAG_STR && !m.val_escaped {
            // The common case, without building a `Val` first.
            let s = self.slice(m.val, m.val_len);
            return (!is_blank(s)).then_some(Cow::Borrowed(s));
        }
        self.value(m).text().filter(|s| !is_blank(s))
    }

    /// `head.key`: text of `key` in the nested object `head`, for a caller
    /// that knows its path has exactly one dot (no flat-name fallback).
    #[inline]
    pub fn nested_member_text(&self, head: &str, key: &str) -> Option<Cow<'a, str>> {
        let Val::Obj(nested) = self.get(head)? else { return None };
        nested_text(nested, key)
    }

    /// Text at a dotted path through nested objects (`"PermissionSet.Name"`), or a
    /// flat member literally named with the dots, as `sf data query --result-format csv`
    /// and some forwarders flatten relationships.
    #[inline]
    pub fn path_text(&self, path: &str) -> Option<Cow<'a, str>> {
        if let Some(v) = self.text(path) {
            return Some(v);
        }
        let (head, Some(rest)) = split_path(path) else { return None };
        self.nested_member_text(head, rest)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, in wire order.
    pub fn keys(&self) -> Vec<Cow<'a, str>> {
        self.members.iter().map(|m| self.key(m).value()).collect()
    }
}

/// A parsed JSON text: objects come back with their members already read, so
/// a record is scanned once, not validated and then re-read.
// Returned by value once per record; boxing the object would add an allocation
// to the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Root<'a> {
    Object(Object<'a>),
    Other(Val<'a>),
}

/// `{"key":"value"` at the very start of a validated object, written compactly
/// with a value free of escapes: the value, read without a parser.
fn compact_first_member<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    let rest = obj.strip_prefix("{\"")?.strip_prefix(key)?.strip_prefix("\":\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// Byte equality of two short slices of equal length, inline: keys are a few
/// to a few dozen bytes, where a call to `memcmp` costs more than comparing.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        0..4 => a == b,
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if word(a, i) != word(b, i) {
                    return false;
                }
                i += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

/// Empty or only whitespace (Unicode's, as `str::trim` has it); a first byte
/// that is visible ASCII settles it without a scan.
#[inline]
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(&b) if b > b' ' && b < 0x80 => false,
        _ => s.trim().is_empty(),
    }
}

/// A dotted path's first name and the rest (`None` without a dot). A byte
/// loop: `split_once` sets up a searcher costing more than these short keys.
#[inline]
fn split_path(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'.') {
        Some(dot) => (&path[..dot], Some(&path[dot + 1..])),
        None => (path, None),
    }
}

/// Text at `path` inside a validated object text, found by walking its members
/// without collecting them (relationship objects are read once per record).
fn nested_text<'a>(obj: &'a str, path: &str) -> Option<Cow<'a, str>> {
    let (head, rest) = split_path(path);
    // `obj` was validated with its parent, so the walk may stop at the first
    // match (`attributes.type` is the first member of every REST row).
    if rest.is_none() {
        if let Some(v) = compact_first_member(obj, head) {
            return (!is_blank(v)).then_some(Cow::Borrowed(v));
        }
    }
    let mut p = Parser::new(obj);
    p.skip_ws();
    let mut found = None;
    let _ = p.object_inner(1, &mut |k, v| {
        if k.eq_str(head) {
            found = Some(v);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match (found?, rest) {
        (Val::Obj(inner), Some(rest)) => nested_text(inner, rest),
        (v, None) => v.text().filter(|s| !is_blank(s)),
        _ => None,
    }
}

/// Parses a whole JSON text (one value, optional surrounding whitespace).
pub fn parse(text: &str) -> Result<Val<'_>, JsonError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.err("trailing characters after value"));
    }
    Ok(v)
}

fn parse_array_items(text: &str) -> Result<Vec<Val<'_>>, JsonError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    let mut items = Vec::new();
    p.array_items(0, Some(&mut items))?;
    Ok(items)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Bit i set when byte i is `"`. Built only for texts with no backslash
    /// and no control byte, where every quote opens or closes a string, so a
    /// string's end is one bit search instead of a byte loop whose exit branch
    /// mispredicts once per string.
    quotes: Vec<u64>,
    plain: bool,
}

/// Texts shorter than this are scanned byte by byte.
const INDEX_MIN_LEN: usize = 256;

thread_local! {
    /// The quote bitmap's storage, reused so the hot path does not allocate.
    static QUOTE_INDEX: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        if self.quotes.capacity() > 0 {
            QUOTE_INDEX.set(std::mem::take(&mut self.quotes));
        }
    }
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut quotes = Vec::new();
        let mut plain = false;
        if bytes.len() >= INDEX_MIN_LEN {
            quotes = QUOTE_INDEX.take();
            plain = quote_index::build(bytes, &mut quotes);
        }
        Parser { text, bytes, pos: 0, quotes, plain }
    }

    /// Position of the first quote at or after `from`.
    #[inline(always)]
    fn next_quote(&self, from: usize) -> Option<usize> {
        quote_from(&self.quotes, from)
    }

    #[cold]
    #[inline(never)]
    fn err(&self, kind: &'static str) -> JsonError {
        JsonError { kind, offset: self.pos }
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        // Compact JSON has no whitespace between tokens: one compare decides.
        if self.bytes.get(self.pos).is_none_or(|&b| b > b' ') {
            return;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn value(&mut self, depth: usize) -> Result<Val<'a>, JsonError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b'{') => {
                let start = self.pos;
                self.skip_object(depth + 1)?;
                Ok(Val::Obj(&self.text[start..self.pos]))
            }
            Some(b'[') => {
                let start = self.pos;
                self.array_items(depth + 1, None)?;
                Ok(Val::Arr(&self.text[start..self.pos]))
            }
            Some(b't') => self.literal("true", Val::Bool(true)),
            Some(b'f') => self.literal("false", Val::Bool(false)),
            Some(b'n') => self.literal("null", Val::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Val<'a>) -> Result<Val<'a>, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<Val<'a>, JsonError> {
        let start = self.pos;
        match number_end(self.bytes, start) {
            Ok(end) => {
                self.pos = end;
                Ok(Val::Num(&self.text[start..end]))
            }
            Err(at) => {
                self.pos = at;
                Err(self.err("invalid number"))
            }
        }
    }

    /// At an opening quote; leaves `pos` after the closing quote.
    #[inline(always)]
    fn string(&mut self) -> Result<JStr<'a>, JsonError> {
        self.pos += 1;
        let start = self.pos;
        if self.plain {
            let Some(end) = self.next_quote(start) else {
                self.pos = self.bytes.len();
                return Err(self.err("unterminated string"));
            };
            self.pos = end + 1;
            return Ok(JStr { raw: &self.text[start..end], escaped: false });
        }
        let mut escaped = false;
        loop {
            self.pos = scan_plain(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"' | b'\\') => {}
                Some(_) => return Err(self.err("control character in string")),
            }
            if self.bytes[self.pos] == b'"' {
                let raw = &self.text[start..self.pos];
                self.pos += 1;
                return Ok(JStr { raw, escaped });
            }
            escaped = true;
            match self.bytes.get(self.pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                Some(b'u') => {
                    let hex = self.bytes.get(self.pos + 2..self.pos + 6);
                    match hex {
                        Some(h) if h.iter().all(u8::is_ascii_hexdigit) => self.pos += 6,
                        _ => return Err(self.err("invalid unicode escape")),
                    }
                }
                _ => return Err(self.err("invalid escape")),
            }
        }
    }

    /// The hot path: the members of a top-level object in a plain text (no
    /// escapes, no control bytes), recorded as offsets. Runs of compact
    /// `"key":"value",` members go through `compact_run`; any other member
    /// (numbers, nested values, whitespace) through the general parser.
    ///
    /// With `RECORD` false the object is only validated (a nested object of
    /// a plain text, such as a REST row's `attributes`), through the same loop.
    fn plain_members<const RECORD: bool>(
        &mut self,
        depth: usize,
        out: &mut Vec<Member>,
        slots: &mut [u8; 256],
    ) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        if self.open_container(b'{', b'}', "expected object")? {
            return Ok(());
        }
        let bytes = self.bytes;
        loop {
            match compact_run::<RECORD>(bytes, &self.quotes, self.pos, out, slots) {
                Run::Closed(end) => {
                    self.pos = end;
                    return Ok(());
                }
                Run::AfterValue(at) => {
                    self.pos = at;
                    if self.after_item(b'}', "expected ',' or '}'")? {
                        return Ok(());
                    }
                    continue;
                }
                Run::Other(at) => self.pos = at,
            }
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected object key"));
            }
            let key = self.pos + 1;
            let key_end = self.closing_quote(key)?;
            self.pos = key_end + 1;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let start = self.pos;
            let tag = match self.peek() {
                Some(b'{') => {
                    self.plain_members::<false>(depth + 1, out, slots)?;
                    TAG_OBJ
                }
                _ => self.value(depth)?.tag(),
            };
            let (val, val_end) = match tag {
                TAG_NULL | TAG_FALSE | TAG_TRUE => (0, 0),
                TAG_STR => (start + 1, self.pos - 1),
                _ => (start, self.pos),
            };
            if RECORD {
                push_member(bytes, out, slots, key, key_end, tag, val, val_end);
            }
            if self.after_item(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// The quote closing a string whose body starts at `start` (plain texts).
    #[inline(always)]
    fn closing_quote(&mut self, start: usize) -> Result<usize, JsonError> {
        match self.next_quote(start) {
            Some(end) => Ok(end),
            None => {
                self.pos = self.bytes.len();
                Err(self.err("unterminated string"))
            }
        }
    }

    /// At `open`: consumes it and following whitespace. True when the container
    /// is empty (its `close` consumed too).
    #[inline(always)]
    fn open_container(&mut self, open: u8, close: u8, expected: &'static str) -> Result<bool, JsonError> {
        if self.peek() != Some(open) {
            return Err(self.err(expected));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After a member or item: consumes `,` (false: more follow) or `close` (true).
    #[inline(always)]
    fn after_item(&mut self, close: u8, expected: &'static str) -> Result<bool, JsonError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.err(expected)),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Result<(), JsonError> {
        self.object_inner(depth, &mut |_, _| ControlFlow::Continue(()))
    }

    /// Walks one object's members, calling `out` for each; `Break` stops the
    /// walk early (the rest is then neither read nor validated).
    fn object_inner(
        &mut self,
        depth: usize,
        out: &mut impl FnMut(JStr<'a>, Val<'a>) -> ControlFlow<()>,
    ) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        if self.open_container(b'{', b'}', "expected object")? {
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected object key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            if out(key, v).is_break() || self.after_item(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    fn array_items(&mut self, depth: usize, mut out: Option<&mut Vec<Val<'a>>>) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        if self.open_container(b'[', b']', "expected array")? {
            return Ok(());
        }
        loop {
            self.skip_ws();
            let v = self.value(depth)?;
            if let Some(out) = out.as_deref_mut() {
                out.push(v);
            }
            if self.after_item(b']', "expected ',' or ']'")? {
                return Ok(());
            }
        }
    }
}

/// Where a run of compact members stopped.
enum Run {
    /// The object's closing brace was consumed; the object ends here.
    Closed(usize),
    /// A member was recorded but is not followed directly by `,` or `}`.
    AfterValue(usize),
    /// The member starting here is not a compact string member (or is malformed):
    /// the general parser takes it, and reports any error.
    Other(usize),
}

/// Records consecutive compact `"key":"value",` members starting at `pos` of a
/// plain text, using the quote bitmap as a cursor: the current word stays in a
/// register and each string end is one bit pop. Stops at the first member of
/// any other shape without consuming it.
///
/// This is the loop a replay spends most of its time in (~35 members per
/// login record), so it is written for the machine: not inlined (inlined into
/// `Object::parse` its state spilled to the stack), byte reads unchecked where
/// a bound is proven, and members written into room reserved up front.
#[inline(never)]
fn compact_run<const RECORD: bool>(
    bytes: &[u8],
    quotes: &[u64],
    mut pos: usize,
    out: &mut Vec<Member>,
    slots: &mut [u8; 256],
) -> Run {
    let len = bytes.len();
    // A member spans at least five bytes (`"":0,`), so this is room enough.
    let mut n = out.len();
    if RECORD {
        out.reserve((len - pos.min(len)) / 5 + 1);
    }
    let room = out.capacity();
    let dst = out.as_mut_ptr();
    // A byte of the text. SAFETY: every caller passes an index below `len`,
    // shown at each use.
    let at = |i: usize| -> u8 {
        debug_assert!(i < len);
        unsafe { *bytes.get_unchecked(i) }
    };
    // The first quote after `p`, straight from the bitmap: no cursor to
    // carry between members. Quote bits are only set below `len`.
    let next_quote = |p: usize| quote_from(quotes, p + 1);
    let run = loop {
        // The key's opening quote at `pos`; in a plain text any quote
        // between members opens a string.
        if pos >= len || at(pos) != b'"' {
            break Run::Other(pos);
        }
        let key = pos + 1;
        let Some(key_end) = next_quote(pos) else { break Run::Other(pos) };
        // `key_end + 2 < len` covers the `:` and the value's first byte.
        if key_end + 2 >= len || at(key_end + 1) != b':' {
            break Run::Other(pos);
        }
        let val = key_end + 2;
        let (tag, val, val_end, after) = match at(val) {
            b'"' => {
                let Some(val_end) = next_quote(val) else { break Run::Other(pos) };
                (TAG_STR, val + 1, val_end, val_end + 1)
            }
            b'-' | b'0'..=b'9' => {
                let Ok(end) = number_end(bytes, val) else { break Run::Other(pos) };
                (TAG_NUM, val, end, end)
            }
            b'n' if bytes.get(val..val + 4) == Some(b"null") => (TAG_NULL, 0, 0, val + 4),
            _ => break Run::Other(pos),
        };
        if RECORD {
            let mut next = 0;
            if n < 255 {
                // `key` and `key_end - 1` lie between two quotes below `len`
                // (an empty key hashes its own quotes, as `key_hash` does).
                let h = usize::from(key_hash_parts(key_end - key, at(key), at(key_end - 1)));
                next = slots[h];
                slots[h] = n as u8 + 1;
            }
            let m = Member::plain(key as u32, (key_end - key) as u32, val as u32, (val_end - val) as u32, tag, next);
            if n < room {
                // SAFETY: `n < room`, the vector's capacity; the slot is
                // initialised here and counted by `set_len` below.
                unsafe { dst.add(n).write(m) };
                n += 1;
            } else {
                break Run::Other(pos);
            }
        }
        if after >= len {
            break Run::AfterValue(after);
        }
        match at(after) {
            b',' => pos = after + 1,
            b'}' => break Run::Closed(after + 1),
            _ => break Run::AfterValue(after),
        }
    };
    if RECORD {
        // SAFETY: members `..n` were each written above (or were already there).
        unsafe { out.set_len(n) };
    }
    run
}

/// The first quote at or after offset `from`, from a quote bitmap.
#[inline(always)]
fn quote_from(quotes: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut word = *quotes.get(w)? & (u64::MAX << (from % 64));
    while word == 0 {
        w += 1;
        word = *quotes.get(w)?;
    }
    Some(w * 64 + word.trailing_zeros() as usize)
}

/// The end of the JSON number starting at `i`; when the grammar
/// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) is not met, the offset
/// where it fails.
#[inline(always)]
fn number_end(bytes: &[u8], mut i: usize) -> Result<usize, usize> {
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    // One or more digits from `i`: the offset after them.
    let digits = |mut i: usize| {
        let start = i;
        while digit(i) {
            i += 1;
        }
        if i > start {
            Ok(i)
        } else {
            Err(i)
        }
    };
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match bytes.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i)?,
        _ => return Err(i),
    };
    if bytes.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Ok(i)
}

/// Appends one unescaped member and chains it into the key-hash slots.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn push_member(
    bytes: &[u8],
    out: &mut Vec<Member>,
    slots: &mut [u8; 256],
    key: usize,
    key_end: usize,
    tag: u8,
    val: usize,
    val_end: usize,
) {
    let i = out.len();
    let mut next = 0;
    if i < 255 {
        let h = usize::from(key_hash(&bytes[key..key_end]));
        next = slots[h];
        slots[h] = i as u8 + 1;
    }
    out.push(Member::plain(key as u32, (key_end - key) as u32, val as u32, (val_end - val) as u32, tag, next));
}

/// The quote bitmap, sixteen bytes at a time.
mod quote_index {
    /// Fills `out` with one bit per byte of `bytes` (set for `"`); returns false,
    /// leaving `out` unusable, when a backslash or control byte is present.
    pub fn build(bytes: &[u8], out: &mut Vec<u64>) -> bool {
        let full = bytes.len() / 64;
        out.clear();
        out.resize(full + 1, 0);
        let special = full_blocks(bytes, &mut out[..full]);
        // The tail, padded with spaces (neither quote, backslash nor control).
        let rest = &bytes[full * 64..];
        let mut tail = [b' '; 64];
        tail[..rest.len()].copy_from_slice(rest);
        let (q, sp) = block64(&tail);
        out[full] = q;
        !(special | sp)
    }

    /// Quote bits of each whole 64-byte block; true if any block holds a
    /// backslash or control byte.
    fn full_blocks(bytes: &[u8], out: &mut [u64]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU was just detected to have AVX2.
            return unsafe { full_blocks_avx2(bytes, out) };
        }
        let mut special = false;
        for (dst, block) in out.iter_mut().zip(bytes.chunks_exact(64)) {
            let (q, sp) = block64(block);
            *dst = q;
            special |= sp;
        }
        special
    }

    /// `full_blocks` compiled for AVX2 as a whole, so the per-block work is
    /// inlined into one loop instead of a call per block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn full_blocks_avx2(bytes: &[u8], out: &mut [u64]) -> bool {
        let mut special = false;
        for (dst, block) in out.iter_mut().zip(bytes.chunks_exact(64)) {
            // SAFETY: this function only runs on CPUs with AVX2.
            let (q, sp) = unsafe { block64_avx2(block) };
            *dst = q;
            special |= sp;
        }
        special
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// The same as `block64`, 32 bytes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block64_avx2(block: &[u8]) -> (u64, bool) {
        use std::arch::x86_64::*;
        let mut q = 0u64;
        let mut sp = 0i32;
        for (i, lane) in block.chunks_exact(32).enumerate() {
            // SAFETY: `lane` is exactly 32 readable bytes; `loadu` has no
            // alignment requirement; the caller checked for AVX2.
            let v = unsafe { _mm256_loadu_si256(lane.as_ptr().cast()) };
            let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
            let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
            let low = _mm256_set1_epi8(0x1f);
            let control = _mm256_cmpeq_epi8(_mm256_max_epu8(v, low), low);
            q |= u64::from(_mm256_movemask_epi8(quote) as u32) << (32 * i);
            sp |= _mm256_movemask_epi8(_mm256_or_si256(backslash, control));
        }
        (q, sp != 0)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn block64(block: &[u8]) -> (u64, bool) {
        use std::arch::x86_64::*;
        let mut q = 0u64;
        let mut sp = 0i32;
        for (i, lane) in block.chunks_exact(16).enumerate() {
            // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics
            // are always available; `lane` is exactly 16 readable bytes and
            // `loadu` has no alignment requirement.
            unsafe {
                let v = _mm_loadu_si128(lane.as_ptr().cast());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // b < 0x20 (unsigned)  <=>  max(b, 0x1f) == 0x1f
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
                q |= u64::from(_mm_movemask_epi8(quote) as u32) << (16 * i);
                sp |= _mm_movemask_epi8(_mm_or_si128(backslash, control));
            }
        }
        (q, sp != 0)
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn block64(block: &[u8]) -> (u64, bool) {
        let mut q = 0u64;
        let mut sp = false;
        for (i, &b) in block.iter().enumerate() {
            q |= u64::from(b == b'"') << i;
            sp |= b == b'\\' || b < 0x20;
        }
        (q, sp)
    }
}

/// Index of the first byte at or after `i` that ends a run of plain string
/// characters: `"`, `\\` or a control character (or `bytes.len()`). Eight bytes
/// at a time with the classic SWAR zero-byte test; the lowest flagged byte is
/// exact, which is the one taken.
#[inline]
fn scan_plain(bytes: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let q = w ^ (LO * u64::from(b'"'));
        let b = w ^ (LO * u64::from(b'\\'));
        let m = (q.wrapping_sub(LO) & !q) | (b.wrapping_sub(LO) & !b) | (w.wrapping_sub(LO * 0x20) & !w);
        let m = m & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = bytes.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// Decodes the escapes of an already validated string body.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else { break };
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = hex4(&raw[i + 2..i + 6]);
                for _ in 0..4 {
                    chars.next();
                }
                if (0xD800..0xDC00).contains(&hi) && raw[i + 6..].starts_with("\\u") {
                    let lo = hex4(&raw[i + 8..i + 12]);
                    if (0xDC00..0xE000).contains(&lo) {
                        for _ in 0..6 {
                            chars.next();
                        }
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        continue;
                    }
                }
                out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
            }
            other => out.push(other),
        }
    }
    out
}

fn hex4(s: &str) -> u32 {
    u32::from_str_radix(s.get(..4).unwrap_or("FFFD"), 16).unwrap_or(0xFFFD)
}

/// True when `text` is exactly one complete JSON value (used to tell JSONL from a
/// pretty-printed document by its first line).
pub fn is_complete_value(text: &str) -> bool {
    parse(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_object_lazily() {
        let o = Object::parse(r#"{"a":"x","b":1.5e3,"c":null,"d":{"e":[1,2]},"f":true}"#).unwrap();
        assert_eq!(o.text("a").as_deref(), Some("x"));
        assert_eq!(o.text("b").as_deref(), Some("1.5e3"));
        assert_eq!(o.get("c"), Some(Val::Null));
        let d = o.get("d").unwrap().as_object().unwrap();
        assert_eq!(d.get("e").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(o.text("f").as_deref(), Some("true"));
        assert_eq!(o.path_text("d.e"), None);
    }

    #[test]
    fn unescapes_on_demand() {
        let o = Object::parse(r#"{"k\u0041":"a\"b\\c\n\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(o.text("kA").as_deref(), Some("a\"b\\c\né😀"));
    }

    #[test]
    fn nested_lookup_fast_path_agrees_with_the_walk() {
        for (obj, want) in [
            (r#"{"type":"LoginEvent","url":"/x"}"#, Some("LoginEvent")),
            (r#"{"type": "LoginEvent"}"#, Some("LoginEvent")),
            (r#"{"types":"x","type":"y"}"#, Some("y")),
            (r#"{"type":"a\"b"}"#, Some("a\"b")),
            (r#"{"type":""}"#, None),
            (r#"{"type":"  "}"#, None),
            (r#"{"url":"/x"}"#, None),
        ] {
            assert_eq!(nested_text(obj, "type").as_deref(), want, "{obj}");
        }
    }

    #[test]
    fn dotted_paths_nested_or_flat() {
        let o = Object::parse(r#"{"PermissionSet":{"Name":"X","Profile":{"Name":"P"}},"Profile.Name":"Q"}"#).unwrap();
        assert_eq!(o.path_text("PermissionSet.Profile.Name").as_deref(), Some("P"));
        assert_eq!(o.path_text("Profile.Name").as_deref(), Some("Q"));
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for bad in [
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "1.",
            "-",
            "{\"a\" 1}",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\u12\"",
            "nul",
            "{} {}",
            "[",
            "{\"a\":\"b",
            "{'a':1}",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err(), "serde accepted {bad:?}");
        }
    }

    #[test]
    fn depth_is_capped() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(parse(&deep).unwrap_err().kind, "nesting too deep");
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_serde_json_on_validity(s in "\\PC{0,40}") {
            let ours = parse(&s).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&s).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "input {:?}", s);
        }

        #[test]
        fn long_texts_take_the_indexed_path_and_still_agree(s in "\\PC{0,40}", pad in 256usize..400) {
            // Long enough for the quote index; `s` may add escapes or control bytes.
            let text = format!("{{\"pad\":\"{}\",\"v\":{s}}}", "x".repeat(pad));
            let ours = Object::parse(&text).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "input {:?}", s);
        }

        #[test]
        fn one_byte_edits_of_a_long_compact_object_agree_with_serde_json(
            at in 0usize..1000,
            edit in 0u8..3,
            ch in proptest::sample::select(b"\",:{}[] x1-n".to_vec()),
        ) {
            // Long and compact, so the edit lands in (or next to) the compact-member run.
            let mut text = String::from(r#"{"attributes":{"type":"LoginEvent","url":"/x"},"A":"alpha","B":"","N":-1.5e3,"#);
            for i in 0..12 {
                text.push_str(&format!(r#""Key{i}":"value number {i}","#));
            }
            text.push_str(r#""Z":null,"T":true,"Last":"end"}"#);
            let mut bytes = text.into_bytes();
            let i = at % bytes.len();
            match edit {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, ch),
                _ => bytes[i] = ch,
            }
            let text = String::from_utf8(bytes).unwrap();
            let ours = Object::parse(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            proptest::prop_assert_eq!(ours.is_ok(), theirs.as_ref().is_ok_and(|v| v.is_object()), "{}", text);
            if let (Ok(o), Ok(serde_json::Value::Object(m))) = (ours, theirs) {
                for (k, v) in &m {
                    if let serde_json::Value::String(s) = v {
                        proptest::prop_assert_eq!(o.get(k).and_then(|v| v.text()).map(|c| c.into_owned()), Some(s.clone()));
                    }
                }
            };
        }

        #[test]
        fn indexed_and_bytewise_paths_read_the_same(v in arb_json()) {
            if let serde_json::Value::Object(mut m) = v {
                m.insert("zz_pad".into(), serde_json::Value::String("p".repeat(300)));
                let compact = serde_json::to_string(&m).unwrap();
                // Python-style separators: spaces after ':' and ',' (no newlines).
                let spaced = format!("{{ {} }}", m.iter()
                    .map(|(k, v)| format!("{} :  {}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                    .collect::<Vec<_>>().join(" , "));
                for text in [compact, spaced] {
                let o = Object::parse(&text).unwrap();
                for (k, val) in &m {
                    let want = match val {
                        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                        serde_json::Value::Bool(b) => Some(b.to_string()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    proptest::prop_assert_eq!(o.text(k).map(|c| c.into_owned()), want, "key {:?} in {}", k, text);
                }
                }
            }
        }

        #[test]
        fn agrees_on_generated_json(v in arb_json()) {
            let text = serde_json::to_string(&v).unwrap();
            let ours = parse(&text).unwrap();
            if let serde_json::Value::Object(m) = &v {
                let o = ours.as_object().unwrap();
                for (k, val) in m {
                    if let serde_json::Value::String(s) = val {
                        proptest::prop_assert_eq!(o.text(k).map(|c| c.into_owned()).unwrap_or_default(),
                            if s.trim().is_empty() { String::new() } else { s.clone() });
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Records sharing keys but not always value kinds, one after another
        /// (the reader's per-thread pools are reused between them): each must
        /// read exactly as serde_json reads it.
        #[test]
        fn records_read_the_same_whatever_shapes_came_before(
            keys in proptest::collection::btree_set("[a-zA-Z_.]{0,10}", 1..10),
            rows in proptest::collection::vec(proptest::collection::vec(arb_json(), 10), 1..6),
            nested in proptest::bool::ANY,
        ) {
            for row in &rows {
                let mut m = serde_json::Map::new();
                if nested {
                    m.insert("attributes".into(), serde_json::json!({"type": "LoginEvent", "url": "/x"}));
                }
                for (k, v) in keys.iter().zip(row) {
                    m.insert(k.clone(), v.clone());
                }
                m.insert("zz_pad".into(), serde_json::Value::String("p".repeat(300)));
                let text = serde_json::to_string(&m).unwrap();
                let o = Object::parse(&text).unwrap();
                proptest::prop_assert_eq!(o.len(), m.len());
                for (k, v) in &m {
                    let got = o.get(k).map(|v| match v {
                        Val::Obj(t) | Val::Arr(t) | Val::Num(t) => serde_json::from_str::<serde_json::Value>(t).unwrap(),
                        Val::Str(s) => serde_json::Value::String(s.value().into_owned()),
                        Val::Bool(b) => serde_json::Value::Bool(b),
                        Val::Null => serde_json::Value::Null,
                    });
                    proptest::prop_assert_eq!(got.as_ref(), Some(v), "key {:?} in {}", k, text);
                }
            }
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "\\PC{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
