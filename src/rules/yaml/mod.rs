//! The only module that knows which YAML parser portgate uses.
//!
//! Contract: [`parse_saphyr`] turns text into a [`Node`] tree in which
//! every mapping, sequence, key and scalar carries its 1-based line and
//! column, or returns the first syntax error with its position. Its fast
//! path, [`parse_streaming`], builds the same tree for the subset of YAML
//! permit files use or gives up, and then the caller parses with saphyr
//! ([`parse_saphyr_streaming`]); both hand the items of one top-level
//! sequence to the caller as they read them. The rest of the loader walks trees and never sees the parser,
//! so replacing the parser touches this module only.
//!
//! The tree is deliberately plain: scalars stay text (the loader decides
//! what a field's text means, so `no` stays the string "no" and `0777` is
//! never octal), anchors and aliases are refused (a permit file has no use
//! for them, and refusing them rules out alias bombs), duplicate keys are
//! errors, and nesting is capped far above what the format needs so hostile
//! input cannot exhaust the stack.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::Pos;

mod fast;
pub(in crate::rules) use fast::parse as parse_fast;
pub(in crate::rules) use fast::parse_streaming;

/// What a streaming parse hands its caller, in the order it finds them.
pub enum Streamed<'t, 'a> {
    /// An item of the streamed sequence, and the root mapping's entries
    /// read before that sequence.
    Item(Node<'t>, &'a [(Node<'t>, Node<'t>)]),
    /// A problem the parse goes on after (a duplicate key).
    Problem(SyntaxError),
}

/// Where a streaming parse sends what it finds.
pub type Each<'t, 's> = dyn for<'a> FnMut(Streamed<'t, 'a>) + 's;
#[cfg(test)]
mod proptests;

/// Deeper than any permit file needs (it nests five levels).
const MAX_DEPTH: usize = 64;
/// Far more keys than any mapping of the format has (at most four).
const MAX_KEYS: usize = 64;

#[derive(Debug, PartialEq)]
pub struct Node<'t> {
    pub pos: Pos,
    pub value: Value<'t>,
}

#[derive(Debug, PartialEq)]
pub enum Value<'t> {
    /// An empty value, `~` or `null`.
    Null,
    Scalar(Cow<'t, str>),
    Seq(Vec<Node<'t>>),
    /// Keys in file order, each with its own position.
    Map(Vec<(Node<'t>, Node<'t>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node<'_> {
    /// "a list", "a mapping", "text", "nothing": for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "text",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as shown in a message: scalars quoted, others by kind.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar(s) => format!("{:?}", s.as_ref()),
            _ => self.kind().to_owned(),
        }
    }

    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

fn pos(span: &Span) -> Pos {
    let m = span.start;
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

enum Frame<'t> {
    /// A sequence being built, or streamed (its items handed out).
    Seq(Pos, Vec<Node<'t>>, bool),
    /// A mapping being built, and the key waiting for its value.
    Map(Pos, Vec<(Node<'t>, Node<'t>)>, Option<Node<'t>>),
}

/// Parses one YAML document into a positioned tree with saphyr-parser's
/// events. Fatal syntax errors end the parse; problems it can continue
/// after (duplicate keys) are returned beside the tree.
pub fn parse_saphyr(text: &str) -> Result<(Node<'_>, Vec<SyntaxError>), SyntaxError> {
    let mut problems = Vec::new();
    let root = saphyr(text, None, &mut |found| {
        if let Streamed::Problem(p) = found {
            problems.push(p);
        }
    })?;
    Ok((root, problems))
}

/// [`parse_saphyr`], but the items of the first sequence under `key` in the
/// root mapping, and the problems, go to `each` as they are found, as on
/// the fast path ([`parse_streaming`]). After a fatal error, whatever
/// `each` built from them belongs to a parse that failed.
pub fn parse_saphyr_streaming<'t>(
    text: &'t str,
    key: &str,
    each: &mut Each<'t, '_>,
) -> Result<Node<'t>, SyntaxError> {
    saphyr(text, Some(key), each)
}

fn saphyr<'t>(
    text: &'t str,
    key: Option<&str>,
    each: &mut Each<'t, '_>,
) -> Result<Node<'t>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut root: Option<Node<'_>> = None;
    let mut documents = 0;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| SyntaxError {
            pos: Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            },
            message: format!("YAML syntax: {}", e.info()),
        })?;
        let at = pos(&span);
        let node = match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                continue;
            }
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos: at,
                        message: "a second YAML document (`---`): the rules file holds one".into(),
                    });
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(SyntaxError {
                    pos: at,
                    message:
                        "aliases (`*name`) are not allowed in the rules file; write the values out"
                            .into(),
                });
            }
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), at)?;
                let null = style == ScalarStyle::Plain
                    && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                Node {
                    pos: at,
                    value: if null {
                        Value::Null
                    } else {
                        Value::Scalar(text)
                    },
                }
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), at)?;
                // The first sequence under `key` in the root mapping.
                let stream = key.is_some_and(|key| match stack.as_slice() {
                    [Frame::Map(_, entries, Some(pending))] => {
                        pending.text() == Some(key)
                            && !entries.iter().any(|(k, _)| k.text() == Some(key))
                    }
                    _ => false,
                });
                push(&mut stack, Frame::Seq(at, Vec::new(), stream), at)?;
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), at)?;
                push(&mut stack, Frame::Map(at, Vec::new(), None), at)?;
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items, _)) => Node {
                    pos: p,
                    value: Value::Seq(items),
                },
                _ => unreachable!("the parser balances sequences"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, entries, None)) => Node {
                    pos: p,
                    value: Value::Map(entries),
                },
                _ => unreachable!("the parser balances mappings"),
            },
        };
        if let [Frame::Map(_, top, _), Frame::Seq(_, _, true)] = stack.as_slice() {
            each(Streamed::Item(node, top));
            continue;
        }
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    if !matches!(node.value, Value::Scalar(_) | Value::Null) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: "a mapping key must be a plain name".into(),
                        });
                    }
                    if entries.len() >= MAX_KEYS {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!("a mapping with more than {MAX_KEYS} keys"),
                        });
                    }
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(k, _)| k.text().is_some() && k.text() == node.text())
                    {
                        each(Streamed::Problem(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key {}: this mapping already has it at {}; give each key once",
                                node.describe(),
                                first.pos
                            ),
                        }));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    let root = root.unwrap_or(Node {
        pos: Pos { line: 1, column: 1 },
        value: Value::Null,
    });
    Ok(root)
}

fn push<'t>(stack: &mut Vec<Frame<'t>>, f: Frame<'t>, at: Pos) -> Result<(), SyntaxError> {
    if stack.len() >= MAX_DEPTH {
        return Err(SyntaxError {
            pos: at,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    stack.push(f);
    Ok(())
}

fn refuse_anchor_or_tag(anchor: usize, tagged: bool, at: Pos) -> Result<(), SyntaxError> {
    if anchor != 0 {
        return Err(SyntaxError {
            pos: at,
            message: "anchors (`&name`) are not allowed in the rules file; write the values out"
                .into(),
        });
    }
    if tagged {
        return Err(SyntaxError {
            pos: at,
            message: "tags (`!name`) are not allowed in the rules file".into(),
        });
    }
    Ok(())
}
