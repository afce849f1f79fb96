//! Record templates: parsing a record that has the same shape as a recent one.
//!
//! Owns one job for the JSON reader: an archive's records nearly all share
//! one shape (the same keys in the same order, the same kind of value under
//! each key), so once a record has been parsed the normal way its *skeleton*
//! (every byte that is not inside a value: braces, keys, separators,
//! literals) is kept as a template. A later record is checked against it
//! segment by segment: each run of skeleton bytes is compared whole, each
//! string value ends at the next quote of the bitmap, each number is checked
//! by its grammar. When every segment matches, the record is valid JSON with
//! the template's structure, and its members (with the key-hash table, which
//! depends only on the keys) are filled in from the template instead of being
//! found and hashed one by one. Anything else (a different key, a `null`
//! where the template has a string, whitespace, an escape) falls back to the
//! normal parser, which then learns the new shape.
//!
//! Only plain texts (no backslash, no control byte) use templates, so a string
//! value's end is always the next quote. Templates are per thread, at most
//! `KEPT` of them, each at most `MAX_TEXT` bytes of skeleton: bounded memory.
//!
//! An input whose shapes keep changing (optional fields that are sometimes
//! `null`) would pay for failed matches and new templates on most records, which
//! costs far more than hits save. So templates judge themselves: over each
//! window of `WINDOW` tried records at most `MAX_LEARNED` shapes are learned,
//! and below three hits in four they switch off for `OFF_FOR` records.

use super::json::{number_end, quote_after, Member, TAG_FALSE, TAG_NULL, TAG_TRUE};
use std::cell::RefCell;

/// Templates kept per thread, most recently used first.
const KEPT: usize = 4;
/// Records longer than this are not learned.
const MAX_TEXT: usize = 64 << 10;

/// What follows a skeleton segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A string body; the segment ends with its opening quote.
    Str,
    /// A number.
    Num,
    /// Nothing: the last segment ends the text.
    End,
}

/// A record offset, as an offset into one of its segments.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    seg: u32,
    off: u32,
}

/// A member, with its offsets anchored to segments.
#[derive(Debug, Clone, Copy)]
struct TMember {
    key: Anchor,
    key_len: u32,
    /// `None` for `null`, `true` and `false`, which carry no offsets.
    val: Option<(Anchor, Anchor)>,
    tag: u8,
    next: u8,
}

#[derive(Debug)]
struct Template {
    skel: Vec<u8>,
    /// (offset into `skel`, length, what follows).
    segs: Vec<(u32, u32, Slot)>,
    /// Per segment of at most 32 bytes (nearly all: a key and its quotes):
    /// its bytes as four words and the masks selecting them, so that it is
    /// compared with wide loads; `None` for a longer one, compared bytewise.
    words: Vec<Option<([u64; 4], [u64; 4])>>,
    members: Vec<TMember>,
    slots: [u8; 256],
}

/// Eight bytes at `at` as a little-endian word, zero-padded past the end.
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    let rest = b.get(at..).unwrap_or_default();
    let n = rest.len().min(8);
    w[..n].copy_from_slice(&rest[..n]);
    u64::from_le_bytes(w)
}

/// The low `n` bytes of a word (`n` ≤ 8).
fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

#[derive(Default)]
struct Cache {
    kept: Vec<Template>,
    /// Scratch: where each segment starts in the record being matched.
    starts: Vec<u32>,
    /// Records of the current window that tried the templates, and hit.
    tries: u32,
    hits: u32,
    /// Templates learned in the current window.
    learned: u32,
    /// Records left to parse without trying templates (a mixed-shape input).
    off: u32,
}

/// Templates are judged over this many tried records.
const WINDOW: u32 = 256;
/// Below this share of hits (in quarters) they are switched off for `OFF_FOR` records:
/// a failed match and a learned shape cost more than a hit saves.
const MIN_HITS_QUARTERS: u32 = 3;
const OFF_FOR: u32 = 4096;
/// Shapes learned at most per window, so an input of ever-new shapes pays for few.
const MAX_LEARNED: u32 = 8;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Fills `members` and `slots` for `text` from a kept template; false when
/// none matches (nothing is then promised about `members` or `slots`).
pub(super) fn apply(text: &[u8], quotes: &[u64], members: &mut Vec<Member>, slots: &mut [u8; 256]) -> bool {
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else { return false };
        if c.off > 0 {
            c.off -= 1;
            return false;
        }
        let c = &mut *c;
        c.tries += 1;
        let mut hit = false;
        for i in 0..c.kept.len() {
            if matches(&c.kept[i], text, quotes, &mut c.starts) {
                fill(&c.kept[i], &c.starts, members, slots);
                if i > 0 {
                    c.kept[..=i].rotate_right(1);
                }
                hit = true;
                break;
            }
        }
        c.hits += u32::from(hit);
        if c.tries == WINDOW {
            if c.hits * 4 < c.tries * MIN_HITS_QUARTERS {
                c.off = OFF_FOR;
            }
            (c.tries, c.hits, c.learned) = (0, 0, 0);
        }
        hit
    })
}

/// Checks `text` against `t`, recording where each segment starts.
#[inline]
fn matches(t: &Template, text: &[u8], quotes: &[u64], starts: &mut Vec<u32>) -> bool {
    starts.clear();
    starts.resize(t.segs.len(), 0);
    let n = text.len();
    let mut pos = 0usize;
    for ((&(off, len, slot), plan), start) in t.segs.iter().zip(&t.words).zip(starts.iter_mut()) {
        let (off, len) = (off as usize, len as usize);
        let end = pos + len;
        if end > n {
            return false;
        }
        let same = match plan {
            Some((want, mask)) if pos + 32 <= n => {
                // SAFETY: `pos + 32 <= n`, so the four eight-byte reads are
                // inside `text`; `read_unaligned` has no alignment requirement.
                let have: [u64; 4] = unsafe {
                    let p = text.as_ptr().add(pos).cast::<u64>();
                    [0, 1, 2, 3].map(|i| u64::from_le(p.add(i).read_unaligned()))
                };
                (0..4).fold(0, |acc, i| acc | ((have[i] ^ want[i]) & mask[i])) == 0
            }
            _ => t.skel.get(off..off + len).is_some_and(|want| super::json::same_bytes(&text[pos..end], want)),
        };
        if !same {
            return false;
        }
        *start = pos as u32;
        pos = match slot {
            // The segment ends with the value's opening quote; in a plain
            // text the next quote closes it.
            Slot::Str => match quote_after(quotes, end - 1) {
                Some(q) => q,
                None => return false,
            },
            Slot::Num => match number_end(text, end) {
                Some(e) => e,
                None => return false,
            },
            Slot::End => end,
        };
    }
    pos == text.len()
}

#[inline]
fn fill(t: &Template, starts: &[u32], members: &mut Vec<Member>, slots: &mut [u8; 256]) {
    debug_assert_eq!(starts.len(), t.segs.len());
    // SAFETY: anchors were made from this template's segments, so every
    // `seg` is below `t.segs.len()`, which `matches` made `starts.len()`.
    let at = |a: Anchor| unsafe { starts.get_unchecked(a.seg as usize) } + a.off;
    members.clear();
    members.reserve(t.members.len());
    let dst = members.as_mut_ptr();
    for (i, m) in t.members.iter().enumerate() {
        let (val, val_end) = match m.val {
            Some((v, e)) => (at(v), at(e)),
            None => (0, 0),
        };
        // SAFETY: `i < t.members.len()`, the capacity reserved above; each
        // slot is written before `set_len` counts it.
        unsafe { dst.add(i).write(Member::plain(at(m.key), m.key_len, val, val_end - val, m.tag, m.next)) };
    }
    // SAFETY: the first `t.members.len()` members were all written above.
    unsafe { members.set_len(t.members.len()) };
    slots.copy_from_slice(&t.slots);
}

/// Keeps the shape of a record the normal parser just read (plain text, at
/// most 255 members), so that the next records of that shape match it.
pub(super) fn learn(text: &[u8], quotes: &[u64], members: &[Member], slots: &[u8; 256]) {
    if text.len() > MAX_TEXT || members.len() > 255 {
        return;
    }
    CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else { return };
        // Not while switched off (this record did not try), and only a few
        // new shapes per window.
        if c.off > 0 || c.learned >= MAX_LEARNED {
            return;
        }
        let Some(t) = build(text, quotes, members, slots) else { return };
        c.learned += 1;
        c.kept.truncate(KEPT - 1);
        c.kept.insert(0, t);
    });
}

fn build(text: &[u8], quotes: &[u64], members: &[Member], slots: &[u8; 256]) -> Option<Template> {
    // Split the text into skeleton segments and value slots.
    let mut segs: Vec<(u32, u32, Slot)> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let (mut seg_start, mut i) = (0usize, 0usize);
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                let q = quote_after(quotes, i)?;
                let mut j = q + 1;
                while text.get(j).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
                    j += 1;
                }
                if text.get(j) == Some(&b':') {
                    // A key: part of the skeleton.
                    i = q + 1;
                } else {
                    starts.push(seg_start);
                    segs.push((seg_start as u32, (i + 1 - seg_start) as u32, Slot::Str));
                    seg_start = q;
                    i = q + 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                let end = number_end(text, i)?;
                starts.push(seg_start);
                segs.push((seg_start as u32, (i - seg_start) as u32, Slot::Num));
                seg_start = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    starts.push(seg_start);
    segs.push((seg_start as u32, (text.len() - seg_start) as u32, Slot::End));
    // Anchor each member's offsets to the segment holding them (a value's
    // start is its slot's start, the end of the segment before it; its end
    // is the next segment's start).
    // A start is anchored to the first segment reaching it (an empty
    // string's body starts where its closing quote's segment does); an end
    // to the last one starting at or before it.
    let anchor = |x: u32, start: bool| -> Option<Anchor> {
        let k = match start {
            true => starts.partition_point(|&s| (s as u32) < x),
            false => starts.partition_point(|&s| s as u32 <= x),
        }
        .checked_sub(1)?;
        let off = x - starts[k] as u32;
        (off <= segs[k].1).then_some(Anchor { seg: k as u32, off })
    };
    let mut tm = Vec::with_capacity(members.len());
    for m in members {
        let val = match m.tag {
            TAG_NULL | TAG_FALSE | TAG_TRUE => None,
            _ => Some((anchor(m.val, true)?, anchor(m.val + m.val_len, false)?)),
        };
        tm.push(TMember { key: anchor(m.key, true)?, key_len: m.key_len, val, tag: m.tag, next: m.next });
    }
    let skel: Vec<u8> = segs.iter().flat_map(|&(s, l, _)| &text[s as usize..(s + l) as usize]).copied().collect();
    // Segment offsets now point into `skel`, where they lie end to end.
    let mut off = 0u32;
    for seg in &mut segs {
        seg.0 = off;
        off += seg.1;
    }
    let words = segs
        .iter()
        .map(|&(off, len, _)| {
            let seg = &skel[off as usize..(off + len) as usize];
            (seg.len() <= 32).then(|| {
                let mask = [0, 1, 2, 3].map(|i| low_bytes(seg.len().saturating_sub(8 * i)));
                ([0, 1, 2, 3].map(|i| word(seg, 8 * i) & mask[i]), mask)
            })
        })
        .collect();
    Some(Template { skel, segs, words, members: tm, slots: *slots })
}
