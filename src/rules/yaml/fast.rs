//! The fast path: a parser for the part of YAML that permit files use.
//!
//! Contract: [`parse`] either returns exactly the tree the saphyr path
//! ([`super::parse_saphyr`]) builds for the same text — the same values and
//! the same line and column on every node — or `None`, and then the caller
//! parses the whole text with saphyr. It never reports an error itself: on
//! anything outside its subset, and on anything wrong, it gives up, so every
//! message and position a broken file gets is saphyr's.
//!
//! The subset, all on single lines:
//!
//! - a block mapping at column 1 as the document, optionally after `---`;
//! - block mappings and block sequences nested in it, including compact
//!   mappings (`- ip: ...`) and sequences at their key's indentation;
//! - flow mappings `{a: b, c: d}` and flow sequences `[25, 587]` that open
//!   and close on one line, nested in each other;
//! - plain, single-quoted and double-quoted scalars on one line (double
//!   quotes with the escapes `\\ \" \/ \n \t \r \0` only);
//! - comments, blank lines, LF or CRLF line ends.
//!
//! Everything else gives up: tabs, control characters, byte order marks,
//! anchors, aliases, tags, block scalars, explicit keys, empty values
//! (implicit nulls), multi-line scalars or flow collections, trailing
//! commas, duplicate keys, null keys, more than [`MAX_DEPTH`] levels. The
//! differential tests (`proptests.rs`, `fuzz/fuzz_targets/rules_fast_path.rs`)
//! hold it to the contract.
//!
//! Speed comes from borrowing: a scalar without escapes is a slice of the
//! text, and lines are scanned byte by byte once.

use std::borrow::Cow;
use std::cell::Cell;

use super::{Each, MAX_KEYS, Node, Streamed, Value};
use crate::rules::Pos;

/// Nesting the fast path accepts (permit files nest five levels); deeper
/// text goes to saphyr, which enforces the real limit.
const MAX_DEPTH: usize = 32;
/// Longest key the fast path accepts; saphyr's limit for implicit keys is
/// 1024 characters.
const MAX_KEY_BYTES: usize = 256;

/// The fast path does not take this text; saphyr will. Tests learn where
/// it gave up.
struct GiveUp {
    #[cfg(test)]
    at: &'static std::panic::Location<'static>,
}

#[track_caller]
fn give_up() -> GiveUp {
    GiveUp {
        #[cfg(test)]
        at: std::panic::Location::caller(),
    }
}

type R<T> = Result<T, GiveUp>;

/// The tree for `text`, or `None` when the fast path gives up.
pub fn parse(text: &str) -> Option<Node<'_>> {
    let mut p = Fast::new(text);
    p.document().ok()
}

/// [`parse`], but when the root mapping's value under `key` is a block
/// sequence, each of its items goes to `each` as soon as it is read instead
/// of into the tree, which holds that sequence empty (at its position). A
/// big file is then never in memory as a whole tree: the caller consumes an
/// item and drops it before the next is read. When this returns `None`,
/// `each` may have been given some items already: whatever it built from
/// them belongs to a parse that gave up.
pub fn parse_streaming<'t>(text: &'t str, key: &str, each: &mut Each<'t, '_>) -> Option<Node<'t>> {
    let mut p = Fast::new(text);
    p.stream = Some((key.to_owned(), each));
    p.document().ok()
}

/// Where in this file the fast path gave up on `text`, if it did.
#[cfg(test)]
pub fn gave_up_at(text: &str) -> Option<String> {
    let mut p = Fast::new(text);
    p.document().err().map(|g| {
        format!(
            "line {} of fast.rs, reading line {}",
            g.at.line(),
            p.next_num - 1
        )
    })
}

/// One line of the text, without its line break.
#[derive(Clone, Copy)]
struct Line {
    /// 1-based.
    num: u32,
    /// Byte offset of its first byte.
    start: usize,
    /// Byte offset of its first byte that is not a space.
    content: usize,
    /// Byte offset of its end (its `\n` or `\r\n`, or the end of the text).
    end: usize,
    /// Whether it is all ASCII (then a byte offset is a column).
    ascii: bool,
}

impl Line {
    fn indent(&self) -> usize {
        self.content - self.start
    }
}

struct Fast<'t, 's> {
    text: &'t str,
    bytes: &'t [u8],
    /// Byte offset of the next line not read yet.
    next: usize,
    /// Its number.
    next_num: u32,
    /// The next line with content, read but not taken.
    peeked: Option<Line>,
    /// Whether a line with content was read (then `---` is a second document).
    seen_content: bool,
    depth: usize,
    /// The items of the collections being read, innermost last: each takes
    /// its own off the top into a vector of exactly their number, so the
    /// tree carries no spare capacity.
    nodes: Vec<Node<'t>>,
    pairs: Vec<(Node<'t>, Node<'t>)>,
    /// The last column counted on a non-ASCII line: (line start, byte
    /// offset, characters before it). Nodes are mostly met left to right,
    /// so the next count starts from here, and a long line with many nodes
    /// costs its length once, not once per node.
    column_mark: Cell<(usize, usize, usize)>,
    /// [`parse_streaming`]'s key and where its sequence's items go.
    stream: Option<(String, &'s mut Each<'t, 's>)>,
}

fn is_flow(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'t, 's> Fast<'t, 's> {
    fn new(text: &'t str) -> Fast<'t, 's> {
        Fast {
            text,
            bytes: text.as_bytes(),
            next: 0,
            next_num: 1,
            peeked: None,
            seen_content: false,
            depth: 0,
            nodes: Vec::new(),
            pairs: Vec::new(),
            column_mark: Cell::new((usize::MAX, 0, 0)),
            stream: None,
        }
    }

    /// Reads the next line, whatever it holds; `None` at the end.
    fn read_line(&mut self) -> R<Option<Line>> {
        let start = self.next;
        if start >= self.bytes.len() {
            return Ok(None);
        }
        let mut ascii = true;
        let mut i = start;
        let end;
        loop {
            let Some(&b) = self.bytes.get(i) else {
                end = i;
                self.next = i;
                break;
            };
            if b == b'\n' {
                end = i;
                self.next = i + 1;
                break;
            }
            if b < 0x20 || b == 0x7f {
                if b == b'\r' && self.bytes.get(i + 1) == Some(&b'\n') {
                    end = i;
                    self.next = i + 2;
                    break;
                }
                // Tabs, control characters, a lone CR: saphyr's.
                return Err(give_up());
            }
            if b >= 0x80 {
                ascii = false;
            }
            i += 1;
        }
        if !ascii
            && self.text[start..end].chars().any(|c| {
                matches!(
                    c,
                    '\u{80}'
                        ..='\u{9f}'
                            | '\u{feff}'
                            | '\u{2028}'
                            | '\u{2029}'
                            | '\u{fffe}'
                            | '\u{ffff}'
                )
            })
        {
            return Err(give_up());
        }
        let content = start
            + self.bytes[start..end]
                .iter()
                .take_while(|&&b| b == b' ')
                .count();
        let num = self.next_num;
        self.next_num = self.next_num.checked_add(1).ok_or(give_up())?;
        Ok(Some(Line {
            num,
            start,
            content,
            end,
            ascii,
        }))
    }

    /// The next line with content (not blank, not only a comment), left
    /// to be taken.
    fn peek(&mut self) -> R<Option<Line>> {
        if self.peeked.is_none() {
            while let Some(line) = self.read_line()? {
                if line.content == line.end || self.bytes[line.content] == b'#' {
                    continue;
                }
                if line.content == line.start && self.is_document_marker(&line) {
                    // `---` or `...`: only a `---` before any content.
                    if self.seen_content || self.bytes[line.content] != b'-' {
                        return Err(give_up());
                    }
                    self.rest_blank(&line, line.content + 3)?;
                    self.seen_content = true;
                    continue;
                }
                self.seen_content = true;
                self.peeked = Some(line);
                break;
            }
        }
        Ok(self.peeked)
    }

    fn take(&mut self) -> Line {
        self.peeked
            .take()
            .expect("take follows a peek that found a line")
    }

    fn is_document_marker(&self, line: &Line) -> bool {
        let s = &self.bytes[line.content..line.end];
        (s.starts_with(b"---") || s.starts_with(b"...")) && s.get(3).is_none_or(|&b| b == b' ')
    }

    fn pos(&self, line: &Line, at: usize) -> Pos {
        let column = if line.ascii {
            at - line.start
        } else {
            let (start, from, chars) = match self.column_mark.get() {
                (start, from, chars) if start == line.start && from <= at => (start, from, chars),
                _ => (line.start, line.start, 0),
            };
            let chars = chars + self.text[from..at].chars().count();
            self.column_mark.set((start, at, chars));
            chars
        };
        Pos {
            line: line.num,
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    fn skip_spaces(&self, line: &Line, mut i: usize) -> usize {
        while i < line.end && self.bytes[i] == b' ' {
            i += 1;
        }
        i
    }

    /// Nothing but spaces and a comment from `i` to the end of the line.
    fn rest_blank(&self, line: &Line, i: usize) -> R<()> {
        let j = self.skip_spaces(line, i);
        if j == line.end || (self.bytes[j] == b'#' && j > i) {
            Ok(())
        } else {
            Err(give_up())
        }
    }

    /// A line that is a block sequence entry: `-` then a space or the end.
    fn is_seq_entry(&self, line: &Line) -> bool {
        self.bytes[line.content] == b'-'
            && (line.content + 1 == line.end || self.bytes[line.content + 1] == b' ')
    }

    /// Gives up on a key the mapping whose entries start at `first` in
    /// `pairs` already has, or on one key too many.
    fn new_key(&self, first: usize, key: &Node<'t>) -> R<()> {
        let entries = &self.pairs[first..];
        if entries.len() >= MAX_KEYS || entries.iter().any(|(k, _)| k.value == key.value) {
            return Err(give_up());
        }
        Ok(())
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(give_up());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn document(&mut self) -> R<Node<'t>> {
        let first = self.peek()?.ok_or(give_up())?;
        if first.indent() != 0 {
            return Err(give_up());
        }
        let first = self.take();
        let root = self.block_map(first, first.content)?;
        if self.peek()?.is_some() {
            return Err(give_up());
        }
        Ok(root)
    }

    /// A block mapping whose first key starts at `at` on `line`; its
    /// indentation is that key's column.
    fn block_map(&mut self, mut line: Line, mut at: usize) -> R<Node<'t>> {
        self.enter()?;
        // Only spaces and `- ` precede the key: bytes are columns.
        let indent = at - line.start;
        let pos = self.pos(&line, at);
        let first = self.pairs.len();
        loop {
            let (key, after) = self.key(&line, at)?.ok_or(give_up())?;
            self.new_key(first, &key)?;
            let stream = self.depth == 1
                && matches!((&self.stream, &key.value), (Some((k, _)), Value::Scalar(s)) if k == s);
            let value = self.block_value(&line, after, indent, stream)?;
            self.pairs.push((key, value));
            match self.peek()? {
                Some(l) if l.indent() == indent && !self.is_seq_entry(&l) => {
                    line = self.take();
                    at = line.content;
                }
                Some(l) if l.indent() >= indent => return Err(give_up()),
                _ => break,
            }
        }
        self.leave();
        Ok(Node {
            pos,
            value: Value::Map(self.pairs.drain(first..).collect()),
        })
    }

    /// A block mapping key at `at`: the key and the offset after its `:`,
    /// or `None` when the text there is not a key.
    fn key(&self, line: &Line, at: usize) -> R<Option<(Node<'t>, usize)>> {
        let (value, end) = match self.bytes[at] {
            b'"' | b'\'' => {
                let (s, end) = self.quoted(line, at)?;
                let j = self.skip_spaces(line, end);
                if j < line.end && self.bytes[j] == b':' {
                    (Value::Scalar(s), j)
                } else {
                    return Ok(None);
                }
            }
            b'{' | b'[' => return Ok(None),
            _ => {
                let (text_end, stop, colon) = self.plain(line, at, false)?;
                if !colon {
                    return Ok(None);
                }
                match plain_value(&self.text[at..text_end]) {
                    Value::Null => return Err(give_up()),
                    v => (v, stop),
                }
            }
        };
        // `end` is at the `:`; a value indicator is followed by a blank.
        if end - at > MAX_KEY_BYTES || (end + 1 < line.end && self.bytes[end + 1] != b' ') {
            return Err(give_up());
        }
        Ok(Some((
            Node {
                pos: self.pos(line, at),
                value,
            },
            end + 1,
        )))
    }

    /// The value after a block mapping key whose `:` ends at `after`;
    /// `stream` when a block sequence there goes item by item to
    /// [`Self::stream`].
    fn block_value(
        &mut self,
        line: &Line,
        after: usize,
        indent: usize,
        stream: bool,
    ) -> R<Node<'t>> {
        let i = self.skip_spaces(line, after);
        if i == line.end || (self.bytes[i] == b'#' && i > after) {
            // The value is on the lines below.
            let next = self.peek()?.ok_or(give_up())?;
            if next.indent() > indent {
                let l = self.take();
                if self.is_seq_entry(&l) {
                    return self.block_seq(l, false, stream);
                }
                return self.block_map(l, l.content);
            }
            if next.indent() == indent && self.is_seq_entry(&next) {
                let l = self.take();
                return self.block_seq(l, true, stream);
            }
            // An empty value.
            return Err(give_up());
        }
        let (node, end) = self.inline(line, i)?;
        self.rest_blank(line, end)?;
        Ok(node)
    }

    /// A block sequence whose first `-` starts `line`; `indentless` when it
    /// sits at its mapping key's indentation (and so ends at the next key);
    /// `stream` when its items go to [`Self::stream`], not into the tree.
    fn block_seq(&mut self, mut line: Line, indentless: bool, stream: bool) -> R<Node<'t>> {
        self.enter()?;
        let indent = line.indent();
        let pos = if indentless {
            // saphyr places a sequence at its key's indentation after the
            // first `-` and the spaces after it: where the entry's content
            // starts, or the end of the line (but after a comment, counted
            // in bytes: left to saphyr).
            let i = self.skip_spaces(&line, line.content + 1);
            if i < line.end && self.bytes[i] == b'#' {
                return Err(give_up());
            }
            self.pos(&line, i)
        } else {
            self.pos(&line, line.content)
        };
        let first = self.nodes.len();
        loop {
            let after = line.content + 1;
            let i = self.skip_spaces(&line, after);
            let item = if i == line.end || (self.bytes[i] == b'#' && i > after) {
                let next = self.peek()?.ok_or(give_up())?;
                if next.indent() <= indent {
                    return Err(give_up());
                }
                let l = self.take();
                if self.is_seq_entry(&l) {
                    self.block_seq(l, false, false)?
                } else {
                    self.block_map(l, l.content)?
                }
            } else if self.key(&line, i)?.is_some() {
                self.block_map(line, i)?
            } else {
                let (node, end) = self.inline(&line, i)?;
                self.rest_blank(&line, end)?;
                node
            };
            match &mut self.stream {
                // Only the root mapping's entries are on the stack now.
                Some((_, each)) if stream => each(Streamed::Item(item, &self.pairs)),
                _ => self.nodes.push(item),
            }
            match self.peek()? {
                Some(l) if l.indent() == indent && self.is_seq_entry(&l) => line = self.take(),
                Some(l) if l.indent() == indent && indentless => break,
                Some(l) if l.indent() >= indent => return Err(give_up()),
                _ => break,
            }
        }
        self.leave();
        Ok(Node {
            pos,
            value: Value::Seq(self.nodes.drain(first..).collect()),
        })
    }

    /// A node that starts at `at` and ends on this line, in block context:
    /// a flow collection or a scalar. Returns it and the offset after it.
    fn inline(&mut self, line: &Line, at: usize) -> R<(Node<'t>, usize)> {
        self.collection_or_scalar(line, at, false)
    }

    /// A node inside a flow collection: a nested collection or a scalar,
    /// not a `key: value` pair.
    fn flow_node(&mut self, line: &Line, at: usize) -> R<(Node<'t>, usize)> {
        if at >= line.end {
            return Err(give_up());
        }
        self.collection_or_scalar(line, at, true)
    }

    /// What [`Self::inline`] and [`Self::flow_node`] share: a flow
    /// collection, a quoted scalar, or a plain one (read by the rules of
    /// flow context when `in_flow`), never a `key: value` pair.
    fn collection_or_scalar(
        &mut self,
        line: &Line,
        at: usize,
        in_flow: bool,
    ) -> R<(Node<'t>, usize)> {
        match self.bytes[at] {
            b'[' | b'{' => self.flow(line, at),
            b'"' | b'\'' => {
                let (s, end) = self.quoted(line, at)?;
                Ok((
                    Node {
                        pos: self.pos(line, at),
                        value: Value::Scalar(s),
                    },
                    end,
                ))
            }
            _ => {
                let (text_end, stop, colon) = self.plain(line, at, in_flow)?;
                if colon {
                    return Err(give_up());
                }
                Ok((
                    Node {
                        pos: self.pos(line, at),
                        value: plain_value(&self.text[at..text_end]),
                    },
                    stop,
                ))
            }
        }
    }

    /// A flow collection opening at `at` (`[` or `{`) and closing on the
    /// same line. Returns it and the offset after its closing bracket.
    fn flow(&mut self, line: &Line, at: usize) -> R<(Node<'t>, usize)> {
        self.enter()?;
        let pos = self.pos(line, at);
        let seq = self.bytes[at] == b'[';
        let close = if seq { b']' } else { b'}' };
        let mut i = self.skip_spaces(line, at + 1);
        let (first_node, first_pair) = (self.nodes.len(), self.pairs.len());
        if i < line.end && self.bytes[i] == close {
            i += 1;
        } else {
            loop {
                if seq {
                    let (node, end) = self.flow_node(line, i)?;
                    self.nodes.push(node);
                    i = end;
                } else {
                    let (key, after) = self.flow_key(line, i)?;
                    self.new_key(first_pair, &key)?;
                    let v = self.skip_spaces(line, after);
                    if v >= line.end || matches!(self.bytes[v], b',' | b'}') {
                        return Err(give_up());
                    }
                    let (value, end) = self.flow_node(line, v)?;
                    self.pairs.push((key, value));
                    i = end;
                }
                let j = self.skip_spaces(line, i);
                if j >= line.end {
                    return Err(give_up());
                }
                if self.bytes[j] == close {
                    i = j + 1;
                    break;
                }
                if self.bytes[j] != b',' {
                    return Err(give_up());
                }
                i = self.skip_spaces(line, j + 1);
                if i >= line.end || self.bytes[i] == close {
                    // A trailing comma, or a collection going on below.
                    return Err(give_up());
                }
            }
        }
        self.leave();
        let value = if seq {
            Value::Seq(self.nodes.drain(first_node..).collect())
        } else {
            Value::Map(self.pairs.drain(first_pair..).collect())
        };
        Ok((Node { pos, value }, i))
    }

    /// A key in a flow mapping and the offset after its `: `.
    fn flow_key(&self, line: &Line, at: usize) -> R<(Node<'t>, usize)> {
        if at >= line.end {
            return Err(give_up());
        }
        let (value, colon) = match self.bytes[at] {
            b'"' | b'\'' => {
                let (s, end) = self.quoted(line, at)?;
                (Value::Scalar(s), self.skip_spaces(line, end))
            }
            b'[' | b'{' => return Err(give_up()),
            _ => {
                let (text_end, stop, colon) = self.plain(line, at, true)?;
                if !colon {
                    return Err(give_up());
                }
                match plain_value(&self.text[at..text_end]) {
                    Value::Null => return Err(give_up()),
                    v => (v, stop),
                }
            }
        };
        // `: ` exactly: no adjacent values (`"a":b`), no `:` at the end.
        if colon + 1 >= line.end
            || self.bytes[colon] != b':'
            || self.bytes[colon + 1] != b' '
            || colon - at > MAX_KEY_BYTES
        {
            return Err(give_up());
        }
        Ok((
            Node {
                pos: self.pos(line, at),
                value,
            },
            colon + 1,
        ))
    }

    /// A plain scalar starting at `at`. Returns the end of its text, where
    /// scanning stopped, and whether it stopped at a value indicator (`: `
    /// or `:` at the end of the line), which is then at the stop offset.
    fn plain(&self, line: &Line, at: usize, flow: bool) -> R<(usize, usize, bool)> {
        let b = self.bytes;
        if at >= line.end {
            return Err(give_up());
        }
        match b[at] {
            b'-' | b'?' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|'
            | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`' | b' ' => return Err(give_up()),
            // `::1`, but no other scalar starting with an indicator.
            b':' if b.get(at + 1) != Some(&b':') || at + 1 >= line.end => return Err(give_up()),
            _ => {}
        }
        let mut i = at;
        let mut text_end = at;
        while i < line.end {
            match b[i] {
                b' ' => {
                    let j = self.skip_spaces(line, i);
                    if j == line.end || b[j] == b'#' {
                        return Ok((text_end, i, false));
                    }
                    i = j;
                    continue;
                }
                b':' => {
                    if i + 1 == line.end || b[i + 1] == b' ' {
                        return Ok((text_end, i, true));
                    }
                    if flow && is_flow(b[i + 1]) {
                        return Err(give_up());
                    }
                }
                c if flow && is_flow(c) => return Ok((text_end, i, false)),
                b'-' if flow && i + 1 < line.end && is_flow(b[i + 1]) => return Err(give_up()),
                _ => {}
            }
            i += 1;
            text_end = i;
        }
        Ok((text_end, i, false))
    }

    /// A quoted scalar opening at `at` and closing on the same line: its
    /// text and the offset after the closing quote.
    fn quoted(&self, line: &Line, at: usize) -> R<(Cow<'t, str>, usize)> {
        let b = self.bytes;
        let quote = b[at];
        let mut owned: Option<String> = None;
        let mut seg = at + 1;
        let mut i = at + 1;
        loop {
            if i >= line.end {
                return Err(give_up());
            }
            let c = b[i];
            if c == quote {
                if quote == b'\'' && i + 1 < line.end && b[i + 1] == b'\'' {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[seg..=i]);
                    i += 2;
                    seg = i;
                    continue;
                }
                break;
            }
            if c == b'\\' && quote == b'"' {
                let e = match b.get(i + 1).filter(|_| i + 1 < line.end) {
                    Some(b'\\') => '\\',
                    Some(b'"') => '"',
                    Some(b'/') => '/',
                    Some(b'n') => '\n',
                    Some(b't') => '\t',
                    Some(b'r') => '\r',
                    Some(b'0') => '\0',
                    _ => return Err(give_up()),
                };
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&self.text[seg..i]);
                s.push(e);
                i += 2;
                seg = i;
                continue;
            }
            i += 1;
        }
        let s = match owned {
            None => Cow::Borrowed(&self.text[at + 1..i]),
            Some(mut s) => {
                s.push_str(&self.text[seg..i]);
                Cow::Owned(s)
            }
        };
        Ok((s, i + 1))
    }
}

/// A plain scalar's value: null for the YAML null words, text otherwise
/// (as the saphyr path decides).
fn plain_value(s: &str) -> Value<'_> {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        Value::Null
    } else {
        Value::Scalar(Cow::Borrowed(s))
    }
}
