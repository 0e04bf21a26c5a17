//! YAML loading with the semantics Ansible gets from its loader.
//!
//! Ansible reads inventories and vars files with `PyYAML` (YAML 1.1 implicit
//! typing) after first trying Python's `json.loads`. Those rules depend on
//! whether a scalar was written plain or quoted and on its explicit tag, and
//! serde's data model (and so `serde_saphyr::from_str`) exposes neither.
//! This module therefore builds its own node tree from the event stream of
//! `granit-parser`, the YAML parser that `serde-saphyr` uses and re-exports,
//! keeping a 1-based line/column on every node.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, Span, Tag};

use super::error::{InventoryError, InventoryWarning};
use super::python;
use crate::limits::MAX_ALIAS_BYTES;

/// Expanding aliases copies nodes; this caps the total so a "billion laughs"
/// document fails instead of exhausting memory.
const ALIAS_NODE_BUDGET: usize = 1_000_000;

/// A YAML node with the position where it starts (1-based line and column).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) data: Data,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// The value of a node, typed as Ansible's loader would type it.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// A string under Ansible's `!unsafe` tag; `ansible-inventory` writes it as
    /// `{"__ansible_unsafe": "..."}`.
    Unsafe(String),
    /// The ciphertext of a `!vault` value; written as `{"__ansible_vault": "..."}`.
    Vault(String),
    /// A YAML timestamp, already in Python's `isoformat()` spelling, which is
    /// how `ansible-inventory` writes dates.
    Timestamp(String),
    Seq(Vec<Node>),
    /// Entries in Python dict order: a repeated key keeps its first position
    /// and takes the last value.
    Map(Vec<(Node, Node)>),
}

impl Data {
    /// Short description for messages, e.g. "a list".
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Data::Null => "null",
            Data::Bool(_) => "a boolean",
            Data::Int(_) => "an integer",
            Data::Float(_) => "a float",
            Data::Str(_) | Data::Unsafe(_) => "a string",
            Data::Vault(_) => "a vault-encrypted value",
            Data::Timestamp(_) => "a timestamp",
            Data::Seq(_) => "a list",
            Data::Map(_) => "a mapping",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Data::Str(text) | Data::Unsafe(text) => Some(text),
            _ => None,
        }
    }

    /// Python truthiness, which Ansible relies on in places like `vars or {}`.
    pub(crate) fn is_falsy(&self) -> bool {
        match self {
            Data::Null => true,
            Data::Bool(flag) => !flag,
            Data::Int(number) => *number == 0,
            Data::Float(number) => *number == 0.0,
            Data::Str(text) | Data::Unsafe(text) => text.is_empty(),
            Data::Seq(items) => items.is_empty(),
            Data::Map(entries) => entries.is_empty(),
            Data::Vault(_) | Data::Timestamp(_) => false,
        }
    }

    /// The text Python's `json.dumps` uses when this value is a mapping key.
    pub(crate) fn key_string(&self) -> String {
        match self {
            Data::Null => "null".to_string(),
            Data::Bool(flag) => flag.to_string(),
            Data::Int(number) => number.to_string(),
            Data::Float(number) => python::float_repr(*number),
            Data::Str(text) | Data::Unsafe(text) | Data::Vault(text) | Data::Timestamp(text) => {
                text.clone()
            }
            // Unreachable for keys: collections are rejected as unhashable.
            Data::Seq(_) | Data::Map(_) => String::new(),
        }
    }

    /// The JSON `ansible-inventory --list` writes for this value.
    ///
    /// JSON cannot hold every Python value, so two spellings are chosen here:
    /// non-finite floats (which Python writes as the bare tokens `Infinity`,
    /// `-Infinity` and `NaN`) become those words as strings, and integers
    /// outside the 64-bit range become the nearest float.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Data::Null => Value::Null,
            Data::Bool(flag) => Value::Bool(*flag),
            Data::Int(number) => int_to_json(*number),
            Data::Float(number) => float_to_json(*number),
            Data::Str(text) | Data::Timestamp(text) => Value::String(text.clone()),
            Data::Unsafe(text) => wrapped("__ansible_unsafe", text),
            Data::Vault(text) => wrapped("__ansible_vault", text),
            Data::Seq(items) => {
                Value::Array(items.iter().map(|item| item.data.to_json()).collect())
            }
            Data::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.data.key_string(), value.data.to_json()))
                    .collect(),
            ),
        }
    }
}

fn wrapped(marker: &str, text: &str) -> Value {
    let mut object = Map::new();
    object.insert(marker.to_string(), Value::String(text.to_string()));
    Value::Object(object)
}

fn int_to_json(number: i128) -> Value {
    if let Ok(small) = i64::try_from(number) {
        Value::Number(small.into())
    } else if let Ok(unsigned) = u64::try_from(number) {
        Value::Number(unsigned.into())
    } else {
        float_to_json(number as f64)
    }
}

pub(crate) fn float_to_json(number: f64) -> Value {
    match Number::from_f64(number) {
        Some(finite) => Value::Number(finite),
        None if number.is_nan() => Value::String("NaN".to_string()),
        None if number > 0.0 => Value::String("Infinity".to_string()),
        None => Value::String("-Infinity".to_string()),
    }
}

/// A parsed YAML (or JSON) file.
pub(crate) struct Document {
    /// `None` for a file with no document (empty or only comments).
    pub(crate) root: Option<Node>,
    pub(crate) warnings: Vec<InventoryWarning>,
}

/// Parses `source` the way Ansible's `DataLoader` does: as JSON when Python's
/// `json.loads` would accept it (JSON number rules, no YAML 1.1 typing),
/// otherwise as a single YAML 1.1 document.
pub(crate) fn load(source: &str, path: &Path) -> Result<Document, InventoryError> {
    let json_mode = serde_json::from_str::<serde::de::IgnoredAny>(source).is_ok();
    let mut options = Options::default();
    options.emit_comments = false;
    let parser = Parser::new_from_str_with_options(source, options);
    let mut composer = Composer {
        events: Box::new(parser),
        path,
        json_mode,
        anchors: HashMap::new(),
        alias_budget: ALIAS_NODE_BUDGET,
        alias_byte_budget: MAX_ALIAS_BYTES,
        warnings: Vec::new(),
    };
    let root = composer.document()?;
    Ok(Document {
        root,
        warnings: composer.warnings,
    })
}

/// An anchored node with its size, measured once when it is anchored.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
}

type EventResult<'input> = Result<(Event<'input>, Span), serde_saphyr::granit_parser::ScanError>;

struct Composer<'input, 'path> {
    events: Box<dyn Iterator<Item = EventResult<'input>> + 'input>,
    path: &'path Path,
    json_mode: bool,
    /// Anchor id -> the node, the number of nodes in it and its string bytes.
    anchors: HashMap<usize, Anchored>,
    alias_budget: usize,
    /// Few nodes can hold many bytes (one long string aliased many times).
    alias_byte_budget: usize,
    warnings: Vec<InventoryWarning>,
}

/// Position of a node: where its tag starts if it has one, as `PyYAML` reports.
fn span_position(span: &Span) -> (usize, usize) {
    let marker = match span.tag_start() {
        Some(tag) if tag.index() < span.start.index() => tag,
        _ => span.start,
    };
    (marker.line(), marker.col() + 1)
}

/// What an explicit tag asks for.
enum TagKind {
    /// No tag, or the non-specific `!`: resolve from the text as usual.
    Implicit,
    Str,
    Int,
    Float,
    Bool,
    Null,
    Timestamp,
    Binary,
    Map,
    Seq,
    Set,
    Omap,
    Merge,
    Value,
    Unsafe,
    Vault,
    Unknown(String),
}

fn classify_tag(tag: Option<&Tag>) -> TagKind {
    let Some(tag) = tag else {
        return TagKind::Implicit;
    };
    let full = format!("{}{}", tag.handle(), tag.suffix());
    match full.as_str() {
        "!" => TagKind::Implicit,
        "!unsafe" => TagKind::Unsafe,
        "!vault" | "!vault-encrypted" => TagKind::Vault,
        _ => match full.strip_prefix("tag:yaml.org,2002:") {
            Some("str" | "python/unicode") => TagKind::Str,
            Some("int") => TagKind::Int,
            Some("float") => TagKind::Float,
            Some("bool") => TagKind::Bool,
            Some("null") => TagKind::Null,
            Some("timestamp") => TagKind::Timestamp,
            Some("binary") => TagKind::Binary,
            Some("map" | "python/dict") => TagKind::Map,
            Some("seq") => TagKind::Seq,
            Some("set") => TagKind::Set,
            Some("omap" | "pairs") => TagKind::Omap,
            Some("merge") => TagKind::Merge,
            Some("value") => TagKind::Value,
            _ => TagKind::Unknown(full),
        },
    }
}

/// A composed node plus whether it is the `<<` merge key.
struct Composed {
    node: Node,
    is_merge_key: bool,
}

impl<'input> Composer<'input, '_> {
    fn yaml_error(&self, line: usize, column: usize, message: impl Into<String>) -> InventoryError {
        InventoryError::Yaml {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn next_event(&mut self) -> Result<(Event<'input>, Span), InventoryError> {
        loop {
            match self.events.next() {
                Some(Ok((Event::Comment(..), _))) => {}
                Some(Ok(event)) => return Ok(event),
                Some(Err(error)) => {
                    let marker = error.marker();
                    let (line, column) = (marker.line(), marker.col() + 1);
                    return Err(self.yaml_error(line, column, error.info()));
                }
                None => {
                    return Err(self.yaml_error(1, 1, "unexpected end of the event stream"));
                }
            }
        }
    }

    fn document(&mut self) -> Result<Option<Node>, InventoryError> {
        let (event, span) = self.next_event()?;
        if !matches!(event, Event::StreamStart) {
            return Err(self.yaml_error(
                span.start.line(),
                span.start.col() + 1,
                "expected the start of the stream",
            ));
        }
        let (event, span) = self.next_event()?;
        let root = match event {
            Event::StreamEnd => return Ok(None),
            Event::DocumentStart(..) => {
                let (event, span) = self.next_event()?;
                let root = self.node(event, span, false, false)?.node;
                let (end, end_span) = self.next_event()?;
                if !matches!(end, Event::DocumentEnd) {
                    let (line, column) = (end_span.start.line(), end_span.start.col() + 1);
                    return Err(self.yaml_error(line, column, "expected the end of the document"));
                }
                root
            }
            _ => {
                let (line, column) = (span.start.line(), span.start.col() + 1);
                return Err(self.yaml_error(line, column, "expected a document"));
            }
        };
        let (event, span) = self.next_event()?;
        match event {
            Event::StreamEnd => Ok(Some(root)),
            _ => Err(self.yaml_error(
                span.start.line(),
                span.start.col() + 1,
                "expected a single document in the stream but found another document",
            )),
        }
    }

    /// Composes the node that starts with `event`. `untrusted` is set inside
    /// an `!unsafe` collection; `is_key` allows the `<<` and `=` keys.
    fn node(
        &mut self,
        event: Event<'input>,
        span: Span,
        untrusted: bool,
        is_key: bool,
    ) -> Result<Composed, InventoryError> {
        let (line, column) = span_position(&span);
        match event {
            Event::Alias(anchor) => {
                let Some(anchored) = self.anchors.get(&anchor) else {
                    return Err(self.yaml_error(
                        line,
                        column,
                        "alias refers to an anchor that is not complete (recursive alias)",
                    ));
                };
                if anchored.nodes > self.alias_budget {
                    return Err(self.yaml_error(
                        line,
                        column,
                        format!("aliases expand to more than {ALIAS_NODE_BUDGET} nodes"),
                    ));
                }
                if anchored.bytes > self.alias_byte_budget {
                    return Err(self.yaml_error(
                        line,
                        column,
                        format!(
                            "aliases expand to more than {} MiB of text, the limit",
                            MAX_ALIAS_BYTES / (1024 * 1024)
                        ),
                    ));
                }
                self.alias_budget -= anchored.nodes;
                self.alias_byte_budget -= anchored.bytes;
                Ok(Composed {
                    node: anchored.node.clone(),
                    is_merge_key: false,
                })
            }
            Event::Scalar(text, style, anchor, tag) => {
                // An empty plain scalar is reported as "~" with an empty span.
                let text = if style == ScalarStyle::Plain && span.start.index() == span.end.index()
                {
                    ""
                } else {
                    text.as_ref()
                };
                let (data, is_merge_key) = self
                    .scalar(text, style, classify_tag(tag.as_deref()), untrusted, is_key)
                    .map_err(|message| self.yaml_error(line, column, message))?;
                let node = Node { data, line, column };
                self.remember(anchor, &node);
                Ok(Composed { node, is_merge_key })
            }
            Event::SequenceStart(_, anchor, tag) => {
                let node = self.sequence(&classify_tag(tag.as_deref()), line, column, untrusted)?;
                self.remember(anchor, &node);
                Ok(Composed {
                    node,
                    is_merge_key: false,
                })
            }
            Event::MappingStart(_, anchor, tag) => {
                let node = self.mapping(&classify_tag(tag.as_deref()), line, column, untrusted)?;
                self.remember(anchor, &node);
                Ok(Composed {
                    node,
                    is_merge_key: false,
                })
            }
            _ => Err(self.yaml_error(line, column, "unexpected yaml event")),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            let anchored = Anchored {
                node: node.clone(),
                nodes: count_nodes(node),
                bytes: count_bytes(node),
            };
            self.anchors.insert(anchor, anchored);
        }
    }

    /// Types a scalar; the flag is set for the `<<` merge key. Errors are
    /// messages for the scalar's position.
    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: TagKind,
        untrusted: bool,
        is_key: bool,
    ) -> Result<(Data, bool), String> {
        let string = |text: &str| {
            if untrusted {
                Data::Unsafe(text.to_string())
            } else {
                Data::Str(text.to_string())
            }
        };
        let no_constructor =
            |name: &str| format!("could not determine a constructor for the tag `{name}`");
        let data = match tag {
            TagKind::Implicit if style != ScalarStyle::Plain => string(text),
            TagKind::Implicit => match self.resolve_plain(text)? {
                Plain::Data(Data::Str(text)) => string(&text),
                Plain::Data(data) => data,
                Plain::Merge if is_key => return Ok((Data::Str(text.to_string()), true)),
                Plain::Merge => return Err(no_constructor("tag:yaml.org,2002:merge")),
                // PyYAML turns a `=` key into a plain string key.
                Plain::ValueKey if is_key => Data::Str(text.to_string()),
                Plain::ValueKey => return Err(no_constructor("tag:yaml.org,2002:value")),
            },
            TagKind::Str => string(text),
            TagKind::Int => construct_int(text)?,
            TagKind::Float => construct_float(text)?,
            TagKind::Bool => construct_bool(text)?,
            TagKind::Null => Data::Null,
            TagKind::Timestamp => construct_timestamp(text, false)?,
            TagKind::Binary => {
                return Err(
                    "`!!binary` values are not supported (ansible-inventory cannot output bytes)"
                        .to_string(),
                );
            }
            TagKind::Merge if is_key => return Ok((Data::Str(text.to_string()), true)),
            TagKind::Merge => return Err(no_constructor("tag:yaml.org,2002:merge")),
            TagKind::Value if is_key => Data::Str(text.to_string()),
            TagKind::Value => return Err(no_constructor("tag:yaml.org,2002:value")),
            TagKind::Map | TagKind::Set => {
                return Err("expected a mapping node, but found a scalar".to_string());
            }
            TagKind::Seq | TagKind::Omap => {
                return Err("expected a sequence node, but found a scalar".to_string());
            }
            // Ansible re-types an `!unsafe`/`!vault` scalar as if it were
            // plain, whatever its quoting, and only strings stay strings.
            TagKind::Unsafe => match self.resolve_plain(text)? {
                Plain::Data(Data::Str(text)) => Data::Unsafe(text),
                Plain::Data(data) => data,
                Plain::Merge => return Err(no_constructor("tag:yaml.org,2002:merge")),
                Plain::ValueKey => return Err(no_constructor("tag:yaml.org,2002:value")),
            },
            TagKind::Vault => match self.resolve_plain(text)? {
                Plain::Data(Data::Str(text)) => Data::Vault(text),
                _ => return Err("the `!vault` tag requires a string value".to_string()),
            },
            TagKind::Unknown(name) => return Err(no_constructor(&name)),
        };
        Ok((data, false))
    }

    fn resolve_plain(&self, text: &str) -> Result<Plain, String> {
        if self.json_mode {
            Ok(resolve_json_plain(text))
        } else {
            resolve_yaml11_plain(text)
        }
    }

    fn sequence(
        &mut self,
        tag: &TagKind,
        line: usize,
        column: usize,
        untrusted: bool,
    ) -> Result<Node, InventoryError> {
        let untrusted_items = match tag {
            TagKind::Implicit | TagKind::Seq | TagKind::Omap => untrusted,
            TagKind::Unsafe => true,
            TagKind::Vault => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "the `!vault` tag requires a string value",
                ));
            }
            TagKind::Map | TagKind::Set => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "expected a mapping node, but found a sequence",
                ));
            }
            TagKind::Unknown(name) => {
                return Err(self.yaml_error(
                    line,
                    column,
                    format!("could not determine a constructor for the tag `{name}`"),
                ));
            }
            _ => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "expected a scalar node, but found a sequence",
                ));
            }
        };
        let mut items = Vec::new();
        loop {
            let (event, span) = self.next_event()?;
            if matches!(event, Event::SequenceEnd) {
                break;
            }
            items.push(self.node(event, span, untrusted_items, false)?.node);
        }
        if matches!(tag, TagKind::Omap) {
            // `!!omap`/`!!pairs` become a list of (key, value) pairs.
            let mut pairs = Vec::with_capacity(items.len());
            for item in items {
                match item.data {
                    Data::Map(mut entries) if entries.len() == 1 => {
                        let (key, value) = entries.remove(0);
                        pairs.push(Node {
                            data: Data::Seq(vec![key, value]),
                            line: item.line,
                            column: item.column,
                        });
                    }
                    _ => {
                        return Err(self.yaml_error(
                            item.line,
                            item.column,
                            "expected a mapping of length 1 in an ordered map",
                        ));
                    }
                }
            }
            return Ok(Node {
                data: Data::Seq(pairs),
                line,
                column,
            });
        }
        Ok(Node {
            data: Data::Seq(items),
            line,
            column,
        })
    }

    fn mapping(
        &mut self,
        tag: &TagKind,
        line: usize,
        column: usize,
        untrusted: bool,
    ) -> Result<Node, InventoryError> {
        let untrusted_entries = match tag {
            TagKind::Implicit | TagKind::Map | TagKind::Set => untrusted,
            TagKind::Unsafe => true,
            TagKind::Vault => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "the `!vault` tag requires a string value",
                ));
            }
            TagKind::Seq | TagKind::Omap => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "expected a sequence node, but found a mapping",
                ));
            }
            TagKind::Unknown(name) => {
                return Err(self.yaml_error(
                    line,
                    column,
                    format!("could not determine a constructor for the tag `{name}`"),
                ));
            }
            _ => {
                return Err(self.yaml_error(
                    line,
                    column,
                    "expected a scalar node, but found a mapping",
                ));
            }
        };
        let mut explicit = Vec::new();
        let mut merged = Vec::new();
        loop {
            let (event, span) = self.next_event()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let key = self.node(event, span, untrusted_entries, true)?;
            if let Data::Timestamp(_) | Data::Vault(_) = key.node.data {
                // ansible-inventory fails to serialise such keys.
                let message = format!("{} cannot be a mapping key", key.node.data.type_name());
                return Err(self.yaml_error(key.node.line, key.node.column, message));
            }
            let (event, span) = self.next_event()?;
            let value = self.node(event, span, untrusted_entries, false)?.node;
            if key.is_merge_key {
                merged.extend(self.merge_source(value)?);
            } else {
                explicit.push((key.node, value));
            }
        }
        // Like PyYAML, merged entries go first so explicit keys override them.
        merged.extend(explicit);
        let entries = self.deduplicate(merged)?;
        if matches!(tag, TagKind::Set) {
            let keys = entries.into_iter().map(|(key, _)| key).collect();
            return Ok(Node {
                data: Data::Seq(keys),
                line,
                column,
            });
        }
        Ok(Node {
            data: Data::Map(entries),
            line,
            column,
        })
    }

    /// The entries a `<<` value contributes: a mapping, or a list of mappings
    /// where earlier mappings win.
    fn merge_source(&self, value: Node) -> Result<Vec<(Node, Node)>, InventoryError> {
        match value.data {
            Data::Map(entries) => Ok(entries),
            Data::Seq(items) => {
                let mut entries = Vec::new();
                for item in items.into_iter().rev() {
                    match item.data {
                        Data::Map(item_entries) => entries.extend(item_entries),
                        _ => {
                            return Err(self.yaml_error(
                                item.line,
                                item.column,
                                "expected a mapping for merging",
                            ));
                        }
                    }
                }
                Ok(entries)
            }
            _ => Err(self.yaml_error(
                value.line,
                value.column,
                "expected a mapping or list of mappings for merging",
            )),
        }
    }

    /// Builds Python dict order: a key seen again keeps its first position and
    /// takes the new value. Ansible warns about each repeat.
    fn deduplicate(
        &mut self,
        entries: Vec<(Node, Node)>,
    ) -> Result<Vec<(Node, Node)>, InventoryError> {
        let mut result: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
        let mut positions: HashMap<KeyIdentity, usize> = HashMap::new();
        for (key, value) in entries {
            let Some(identity) = KeyIdentity::of(&key.data) else {
                return Err(self.yaml_error(
                    key.line,
                    key.column,
                    format!("found unhashable key ({})", key.data.type_name()),
                ));
            };
            if let Some(&index) = positions.get(&identity) {
                self.warnings.push(InventoryWarning {
                    path: self.path.to_path_buf(),
                    line: key.line,
                    column: key.column,
                    message: format!(
                        "found duplicate mapping key `{}`; using the last defined value",
                        key.data.key_string()
                    ),
                });
                result[index].1 = value;
            } else {
                if !matches!(identity, KeyIdentity::NotANumber) {
                    positions.insert(identity, result.len());
                }
                result.push((key, value));
            }
        }
        Ok(result)
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.data {
        Data::Seq(items) => items.iter().map(count_nodes).sum(),
        Data::Map(entries) => entries
            .iter()
            .map(|(key, value)| count_nodes(key) + count_nodes(value))
            .sum(),
        _ => 0,
    }
}

/// String bytes in a node and its children, saturating: what copying it costs
/// beyond the nodes themselves.
fn count_bytes(node: &Node) -> usize {
    match &node.data {
        Data::Str(text) | Data::Unsafe(text) | Data::Vault(text) | Data::Timestamp(text) => {
            text.len()
        }
        Data::Seq(items) => items
            .iter()
            .fold(0, |sum: usize, item| sum.saturating_add(count_bytes(item))),
        Data::Map(entries) => entries.iter().fold(0, |sum: usize, (key, value)| {
            sum.saturating_add(count_bytes(key))
                .saturating_add(count_bytes(value))
        }),
        Data::Null | Data::Bool(_) | Data::Int(_) | Data::Float(_) => 0,
    }
}

/// Python's key equality: `1`, `1.0` and `True` are the same key; NaN never
/// equals anything.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyIdentity {
    Null,
    Number(i128),
    FloatBits(u64),
    NotANumber,
    Text(String),
    Vault(String),
    Timestamp(String),
}

impl KeyIdentity {
    fn of(data: &Data) -> Option<KeyIdentity> {
        Some(match data {
            Data::Null => KeyIdentity::Null,
            Data::Bool(flag) => KeyIdentity::Number(i128::from(*flag)),
            Data::Int(number) => KeyIdentity::Number(*number),
            Data::Float(number) if number.is_nan() => KeyIdentity::NotANumber,
            Data::Float(number) => match python::int_from_float(*number) {
                Some(whole) if number.fract() == 0.0 => KeyIdentity::Number(whole),
                _ => KeyIdentity::FloatBits(number.to_bits()),
            },
            Data::Str(text) | Data::Unsafe(text) => KeyIdentity::Text(text.clone()),
            Data::Vault(text) => KeyIdentity::Vault(text.clone()),
            Data::Timestamp(text) => KeyIdentity::Timestamp(text.clone()),
            Data::Seq(_) | Data::Map(_) => return None,
        })
    }
}

/// Result of implicit typing of a plain scalar.
#[derive(Debug)]
enum Plain {
    Data(Data),
    /// `<<`: a merge key.
    Merge,
    /// `=`: YAML 1.1's "value" key, which `PyYAML` cannot construct as a value.
    ValueKey,
}

/// JSON typing for the plain scalars of a document Python's `json.loads`
/// accepted: only `true`, `false`, `null` and numbers are unquoted.
fn resolve_json_plain(text: &str) -> Plain {
    Plain::Data(match text {
        "true" => Data::Bool(true),
        "false" => Data::Bool(false),
        "null" => Data::Null,
        _ if text.contains(['.', 'e', 'E']) => match python::float_from_str(text) {
            Some(number) => Data::Float(number),
            None => Data::Str(text.to_string()),
        },
        _ => match text.parse::<i128>() {
            Ok(number) => Data::Int(number),
            Err(_) => match python::float_from_str(text) {
                Some(number) => Data::Float(number),
                None => Data::Str(text.to_string()),
            },
        },
    })
}

/// `PyYAML`'s implicit resolvers (YAML 1.1): which type a plain scalar gets.
fn resolve_yaml11_plain(text: &str) -> Result<Plain, String> {
    let Some(first) = text.chars().next() else {
        return Ok(Plain::Data(Data::Null));
    };
    if "yYnNtTfFoO".contains(first) && is_yaml11_bool(text) {
        return construct_bool(text).map(Plain::Data);
    }
    if "-+0123456789.".contains(first) && is_yaml11_float(text) {
        return construct_float(text).map(Plain::Data);
    }
    if "-+0123456789".contains(first) && is_yaml11_int(text) {
        return construct_int(text).map(Plain::Data);
    }
    if text == "<<" {
        return Ok(Plain::Merge);
    }
    if matches!(text, "~" | "null" | "Null" | "NULL") {
        return Ok(Plain::Data(Data::Null));
    }
    if first.is_ascii_digit() && parse_timestamp(text, true).is_some() {
        return construct_timestamp(text, true).map(Plain::Data);
    }
    if text == "=" {
        return Ok(Plain::ValueKey);
    }
    Ok(Plain::Data(Data::Str(text.to_string())))
}

fn is_yaml11_bool(text: &str) -> bool {
    matches!(
        text,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// A cursor over ASCII bytes for the hand-written matchers below.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            position: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }
    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.position + offset).copied()
    }
    fn at_end(&self) -> bool {
        self.position >= self.bytes.len()
    }
    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }
    fn eat_if(&mut self, accept: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(byte) if accept(byte) => {
                self.position += 1;
                true
            }
            _ => false,
        }
    }
    /// Consumes bytes while `accept` holds; returns how many.
    fn eat_while(&mut self, accept: impl Fn(u8) -> bool) -> usize {
        let start = self.position;
        while self.eat_if(&accept) {}
        self.position - start
    }
    fn eat_sign(&mut self) {
        let _ = self.eat(b'-') || self.eat(b'+');
    }
    fn eat_str(&mut self, text: &str) -> bool {
        if self.bytes[self.position..].starts_with(text.as_bytes()) {
            self.position += text.len();
            true
        } else {
            false
        }
    }
}

fn is_digit_or_underscore(byte: u8) -> bool {
    byte.is_ascii_digit() || byte == b'_'
}

/// One or more `:[0-5]?[0-9]` groups (base-60 parts).
fn eat_sexagesimal_parts(cursor: &mut Cursor) -> bool {
    let mut groups = 0;
    while cursor.peek() == Some(b':') {
        let two_digits = matches!(cursor.peek_at(1), Some(b'0'..=b'5'))
            && cursor.peek_at(2).is_some_and(|b| b.is_ascii_digit());
        let one_digit = cursor.peek_at(1).is_some_and(|b| b.is_ascii_digit());
        if two_digits {
            cursor.position += 3;
        } else if one_digit {
            cursor.position += 2;
        } else {
            return false;
        }
        groups += 1;
    }
    groups > 0
}

/// Optional `[eE][-+][0-9]+` (YAML 1.1 requires the exponent sign).
fn eat_float_exponent(cursor: &mut Cursor) -> bool {
    if cursor.eat(b'e') || cursor.eat(b'E') {
        if !(cursor.eat(b'-') || cursor.eat(b'+')) {
            return false;
        }
        return cursor.eat_while(|b| b.is_ascii_digit()) > 0;
    }
    true
}

fn is_yaml11_float(text: &str) -> bool {
    let matches = |pattern: fn(&mut Cursor) -> bool| {
        let mut cursor = Cursor::new(text);
        pattern(&mut cursor) && cursor.at_end()
    };
    // [-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?
    matches(|c| {
        c.eat_sign();
        c.eat_if(|b| b.is_ascii_digit()) && {
            c.eat_while(is_digit_or_underscore);
            c.eat(b'.')
        } && {
            c.eat_while(is_digit_or_underscore);
            eat_float_exponent(c)
        }
    }) ||
    // \.[0-9][0-9_]*([eE][-+][0-9]+)?
    matches(|c| {
        c.eat(b'.') && c.eat_if(|b| b.is_ascii_digit()) && {
            c.eat_while(is_digit_or_underscore);
            eat_float_exponent(c)
        }
    }) ||
    // [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
    matches(|c| {
        c.eat_sign();
        c.eat_if(|b| b.is_ascii_digit()) && {
            c.eat_while(is_digit_or_underscore);
            eat_sexagesimal_parts(c)
        } && c.eat(b'.') && {
            c.eat_while(is_digit_or_underscore);
            true
        }
    }) ||
    // [-+]?\.(inf|Inf|INF) and \.(nan|NaN|NAN)
    matches(|c| {
        c.eat_sign();
        c.eat_str(".inf") || c.eat_str(".Inf") || c.eat_str(".INF")
    }) || matches!(text, ".nan" | ".NaN" | ".NAN")
}

fn is_yaml11_int(text: &str) -> bool {
    let matches = |pattern: fn(&mut Cursor) -> bool| {
        let mut cursor = Cursor::new(text);
        pattern(&mut cursor) && cursor.at_end()
    };
    // [-+]?0b[0-1_]+
    matches(|c| {
        c.eat_sign();
        c.eat_str("0b") && c.eat_while(|b| matches!(b, b'0' | b'1' | b'_')) > 0
    }) ||
    // [-+]?0[0-7_]+
    matches(|c| {
        c.eat_sign();
        c.eat(b'0') && c.eat_while(|b| matches!(b, b'0'..=b'7' | b'_')) > 0
    }) ||
    // [-+]?(0|[1-9][0-9_]*)
    matches(|c| {
        c.eat_sign();
        c.eat(b'0')
            || (c.eat_if(|b| matches!(b, b'1'..=b'9')) && {
                c.eat_while(is_digit_or_underscore);
                true
            })
    }) ||
    // [-+]?0x[0-9a-fA-F_]+
    matches(|c| {
        c.eat_sign();
        c.eat_str("0x") && c.eat_while(|b| b.is_ascii_hexdigit() || b == b'_') > 0
    }) ||
    // [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+
    matches(|c| {
        c.eat_sign();
        c.eat_if(|b| matches!(b, b'1'..=b'9')) && {
            c.eat_while(is_digit_or_underscore);
            eat_sexagesimal_parts(c)
        }
    })
}

/// `PyYAML`'s int constructor, which explicit `!!int` also uses.
fn construct_int(text: &str) -> Result<Data, String> {
    let cleaned = text.replace('_', "");
    let invalid = || format!("invalid literal for an integer: `{text}`");
    let (negative, digits) = match cleaned.as_bytes().first() {
        None => return Err(invalid()),
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        Some(_) => (false, cleaned.as_str()),
    };
    let magnitude = if digits == "0" {
        Some(0)
    } else if let Some(binary) = digits.strip_prefix("0b") {
        python::int_from_digits(binary, 2)
    } else if let Some(hex) = digits.strip_prefix("0x") {
        python::int_from_digits(hex, 16)
    } else if digits.starts_with('0') {
        python::int_from_digits(digits, 8)
    } else if digits.contains(':') {
        let mut total: Option<i128> = Some(0);
        for part in digits.split(':') {
            total = match (total, python::int_from_str(part)) {
                (Some(sum), Some(value)) => {
                    sum.checked_mul(60).and_then(|sum| sum.checked_add(value))
                }
                _ => None,
            };
        }
        total
    } else if let Some(value) = python::int_from_str(digits) {
        Some(value)
    } else {
        // Beyond i128: keep the magnitude as the nearest float.
        return if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
            Ok(Data::Float(
                digits.parse::<f64>().map_err(|_| invalid())? * if negative { -1.0 } else { 1.0 },
            ))
        } else {
            Err(invalid())
        };
    };
    let magnitude = magnitude.ok_or_else(invalid)?;
    Ok(Data::Int(if negative { -magnitude } else { magnitude }))
}

/// `PyYAML`'s float constructor, which explicit `!!float` also uses.
fn construct_float(text: &str) -> Result<Data, String> {
    let cleaned = text.replace('_', "").to_lowercase();
    let invalid = || format!("could not convert string to float: `{text}`");
    let (sign, body) = match cleaned.as_bytes().first() {
        None => return Err(invalid()),
        Some(b'-') => (-1.0, &cleaned[1..]),
        Some(b'+') => (1.0, &cleaned[1..]),
        Some(_) => (1.0, cleaned.as_str()),
    };
    let value = if body == ".inf" {
        sign * f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        let mut parts = Vec::new();
        for part in body.split(':') {
            parts.push(python::float_from_str(part).ok_or_else(invalid)?);
        }
        // Same summation order as PyYAML: least significant part first.
        let mut total = 0.0;
        let mut base = 1.0;
        for part in parts.iter().rev() {
            total += part * base;
            base *= 60.0;
        }
        sign * total
    } else {
        sign * python::float_from_str(body).ok_or_else(invalid)?
    };
    Ok(Data::Float(value))
}

fn construct_bool(text: &str) -> Result<Data, String> {
    match text.to_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(Data::Bool(true)),
        "no" | "false" | "off" => Ok(Data::Bool(false)),
        _ => Err(format!("invalid boolean: `{text}`")),
    }
}

/// The parts of a YAML 1.1 timestamp.
struct TimestampParts {
    year: u32,
    month: u32,
    day: u32,
    time: Option<TimeParts>,
}

struct TimeParts {
    hour: u32,
    minute: u32,
    second: u32,
    /// Fraction digits as written (Python keeps the first six).
    fraction: String,
    /// `None`: naive; `Some(minutes)`: offset from UTC.
    offset: Option<(bool, u32, u32)>,
}

fn number_of(cursor: &mut Cursor, text: &str, min: usize, max: usize) -> Option<u32> {
    let start = cursor.position;
    let count = cursor.eat_while(|b| b.is_ascii_digit());
    if count < min || count > max {
        return None;
    }
    text[start..cursor.position].parse().ok()
}

/// Matches `PyYAML`'s timestamp syntax. `implicit` applies the stricter
/// resolver rule that a date alone needs two-digit month and day.
fn parse_timestamp(text: &str, implicit: bool) -> Option<TimestampParts> {
    let mut c = Cursor::new(text);
    let year = number_of(&mut c, text, 4, 4)?;
    if !c.eat(b'-') {
        return None;
    }
    let month_start = c.position;
    let month = number_of(&mut c, text, 1, 2)?;
    let month_digits = c.position - month_start;
    if !c.eat(b'-') {
        return None;
    }
    let day_start = c.position;
    let day = number_of(&mut c, text, 1, 2)?;
    let day_digits = c.position - day_start;
    if c.at_end() {
        if implicit && (month_digits != 2 || day_digits != 2) {
            return None;
        }
        return Some(TimestampParts {
            year,
            month,
            day,
            time: None,
        });
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat_while(|b| b == b' ' || b == b'\t') > 0) {
        return None;
    }
    let hour = number_of(&mut c, text, 1, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = number_of(&mut c, text, 2, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let second = number_of(&mut c, text, 2, 2)?;
    let mut fraction = String::new();
    if c.eat(b'.') {
        let start = c.position;
        c.eat_while(|b| b.is_ascii_digit());
        fraction = text[start..c.position].to_string();
    }
    c.eat_while(|b| b == b' ' || b == b'\t');
    let offset = if c.at_end() {
        None
    } else if c.eat(b'Z') {
        Some((false, 0, 0))
    } else {
        let negative = if c.eat(b'-') {
            true
        } else if c.eat(b'+') {
            false
        } else {
            return None;
        };
        let hours = number_of(&mut c, text, 1, 2)?;
        let minutes = if c.eat(b':') {
            number_of(&mut c, text, 2, 2)?
        } else {
            0
        };
        Some((negative, hours, minutes))
    };
    if !c.at_end() {
        return None;
    }
    Some(TimestampParts {
        year,
        month,
        day,
        time: Some(TimeParts {
            hour,
            minute,
            second,
            fraction,
            offset,
        }),
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Builds what Python's `date`/`datetime(...).isoformat()` prints, with
/// Python's range checks.
fn construct_timestamp(text: &str, implicit: bool) -> Result<Data, String> {
    let parts =
        parse_timestamp(text, implicit).ok_or_else(|| format!("invalid timestamp: `{text}`"))?;
    if parts.year == 0 {
        return Err(format!("year is out of range in `{text}`"));
    }
    if !(1..=12).contains(&parts.month) {
        return Err(format!("month must be in 1..12 in `{text}`"));
    }
    if parts.day == 0 || parts.day > days_in_month(parts.year, parts.month) {
        return Err(format!("day is out of range for month in `{text}`"));
    }
    let date = format!("{:04}-{:02}-{:02}", parts.year, parts.month, parts.day);
    let Some(time) = parts.time else {
        return Ok(Data::Timestamp(date));
    };
    if time.hour > 23 || time.minute > 59 || time.second > 59 {
        return Err(format!("time is out of range in `{text}`"));
    }
    let mut iso = format!(
        "{date}T{:02}:{:02}:{:02}",
        time.hour, time.minute, time.second
    );
    let micros: String = time.fraction.chars().take(6).collect();
    let micros = format!("{micros:0<6}");
    if micros != "000000" {
        iso.push('.');
        iso.push_str(&micros);
    }
    if let Some((negative, hours, minutes)) = time.offset {
        let total = hours * 60 + minutes;
        if total >= 24 * 60 {
            return Err(format!("utc offset must be less than 24 hours in `{text}`"));
        }
        let sign = if negative && total > 0 { '-' } else { '+' };
        iso = format!("{iso}{sign}{:02}:{:02}", total / 60, total % 60);
    }
    Ok(Data::Timestamp(iso))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn value_of(yaml: &str) -> Value {
        let document = load(&format!("v: {yaml}\n"), &PathBuf::from("t.yml")).expect("valid yaml");
        match document.root.map(|root| root.data.to_json()) {
            Some(Value::Object(mut object)) => object.remove("v").unwrap_or(Value::Null),
            other => panic!("unexpected document {other:?}"),
        }
    }

    fn error_of(source: &str) -> (usize, usize, String) {
        match load(source, &PathBuf::from("t.yml")) {
            Err(InventoryError::Yaml {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("expected an error for {source:?}"),
        }
    }

    #[test]
    fn yaml11_booleans() {
        for yes in [
            "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE",
        ] {
            assert_eq!(value_of(yes), json!(true), "{yes}");
        }
        for no in [
            "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE",
        ] {
            assert_eq!(value_of(no), json!(false), "{no}");
        }
        for text in ["y", "n", "Y", "tRuE", "oFF", "nULL"] {
            assert_eq!(value_of(text), json!(text), "{text}");
        }
        assert_eq!(value_of("'yes'"), json!("yes"));
        assert_eq!(value_of("\"on\""), json!("on"));
    }

    #[test]
    fn yaml11_integers() {
        assert_eq!(value_of("0755"), json!(493));
        assert_eq!(value_of("0789"), json!("0789"));
        assert_eq!(value_of("0o17"), json!("0o17"));
        assert_eq!(value_of("0x1F"), json!(31));
        assert_eq!(value_of("0X1F"), json!("0X1F"));
        assert_eq!(value_of("-0x_1F"), json!(-31));
        assert_eq!(value_of("0b1_01"), json!(5));
        assert_eq!(value_of("1_000"), json!(1000));
        assert_eq!(value_of("+12"), json!(12));
        assert_eq!(value_of("-0"), json!(0));
        assert_eq!(value_of("1:30"), json!(90));
        assert_eq!(value_of("190:20:30"), json!(685_230));
        assert_eq!(value_of("0:30"), json!("0:30"));
        assert_eq!(value_of("'0755'"), json!("0755"));
    }

    #[test]
    fn yaml11_floats() {
        assert_eq!(value_of("1.5"), json!(1.5));
        assert_eq!(value_of("1."), json!(1.0));
        assert_eq!(value_of(".5"), json!(0.5));
        assert_eq!(value_of("1e3"), json!("1e3"));
        assert_eq!(value_of("1.0e3"), json!("1.0e3"));
        assert_eq!(value_of("1.0e+3"), json!(1000.0));
        assert_eq!(value_of("-1_0.5e+2"), json!(-1050.0));
        assert_eq!(value_of("190:20:30.15"), json!(685_230.15));
        assert_eq!(value_of(".inf"), json!("Infinity"));
        assert_eq!(value_of("-.Inf"), json!("-Infinity"));
        assert_eq!(value_of(".NaN"), json!("NaN"));
        assert_eq!(value_of("-.nan"), json!("-.nan"));
    }

    #[test]
    fn yaml11_nulls_and_strings() {
        for null in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(value_of(null), Value::Null, "{null:?}");
        }
        assert_eq!(value_of("!!str"), json!(""));
        assert_eq!(value_of("!!str 123"), json!("123"));
        assert_eq!(value_of("! 123"), json!(123));
        assert_eq!(value_of("!!int \"0x10\""), json!(16));
        assert_eq!(value_of("!!float \"1\""), json!(1.0));
        assert_eq!(value_of("!!bool \"yes\""), json!(true));
        assert_eq!(value_of("!!null \"\""), Value::Null);
    }

    #[test]
    fn timestamps_use_python_isoformat() {
        assert_eq!(value_of("2001-12-14"), json!("2001-12-14"));
        assert_eq!(
            value_of("2001-12-14t21:59:43.10-05:00"),
            json!("2001-12-14T21:59:43.100000-05:00")
        );
        assert_eq!(value_of("2020-1-2 3:04:05"), json!("2020-01-02T03:04:05"));
        assert_eq!(
            value_of("2020-01-02T03:04:05Z"),
            json!("2020-01-02T03:04:05+00:00")
        );
        assert_eq!(
            value_of("2020-01-02 03:04:05.1234567 +5"),
            json!("2020-01-02T03:04:05.123456+05:00")
        );
        assert_eq!(
            value_of("2020-01-02t03:04:05.000"),
            json!("2020-01-02T03:04:05")
        );
        assert_eq!(
            value_of("2020-01-02 03:04:05 -03:30"),
            json!("2020-01-02T03:04:05-03:30")
        );
        assert_eq!(value_of("2020-1-02"), json!("2020-1-02"));
        assert_eq!(error_of("v: 2020-02-30\n").0, 1);
    }

    #[test]
    fn ansible_tags() {
        assert_eq!(
            value_of("!unsafe \"{{ x }}\""),
            json!({"__ansible_unsafe": "{{ x }}"})
        );
        assert_eq!(value_of("!unsafe 123"), json!(123));
        assert_eq!(value_of("!unsafe \"\""), Value::Null);
        assert_eq!(
            value_of("!unsafe {a: \"{{x}}\", b: [c, 1]}"),
            json!({"a": {"__ansible_unsafe": "{{x}}"}, "b": [{"__ansible_unsafe": "c"}, 1]})
        );
        assert_eq!(
            value_of("!vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231"),
            json!({"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n6231\n"})
        );
        assert_eq!(value_of("!!set {x, y}"), json!(["x", "y"]));
    }

    #[test]
    fn rejected_tags_and_values() {
        assert_eq!(
            error_of("a:\n  s: !foo bar\n"),
            (
                2,
                6,
                "could not determine a constructor for the tag `!foo`".to_string()
            )
        );
        assert_eq!(error_of("a: =\n").0, 1);
        assert_eq!(
            error_of("a: !!int abc\n").2,
            "invalid literal for an integer: `abc`"
        );
        assert!(error_of("a: !!binary aGVsbG8=\n").2.contains("binary"));
        assert_eq!(error_of("a: 1\n---\nb: 2\n").0, 2);
        assert_eq!(error_of("a: [1, {b: ]\n").0, 1);
    }

    #[test]
    fn merge_keys_and_duplicates() {
        let source = "base: &b {k1: 1, k2: 2}\nother: &o {k3: 3, k1: 9}\nm:\n  <<: [*b, *o]\n  k2: 5\n  k2: 6\n";
        let document = load(source, &PathBuf::from("t.yml")).expect("valid");
        let value = document
            .root
            .map_or(Value::Null, |root| root.data.to_json());
        assert_eq!(value["m"], json!({"k1": 1, "k2": 6, "k3": 3}));
        assert_eq!(
            document.warnings.len(),
            3,
            "k1 twice from the merge, k2 from the merge and again explicitly"
        );
        assert_eq!(value_of("{1: a, true: b, 1.0: c}"), json!({"1": "c"}));
        assert_eq!(
            value_of("{2.5: a, ~: b, yes: c}"),
            json!({"2.5": "a", "null": "b", "true": "c"})
        );
        assert_eq!(value_of("{=: a}"), json!({"=": "a"}));
    }

    #[test]
    fn json_documents_use_json_number_rules() {
        let source = r#"{"v": {"x": 1e3, "y": 1.0, "z": "yes", "w": -0, "big": 1E400}}"#;
        let document = load(source, &PathBuf::from("t.json")).expect("valid");
        let value = document
            .root
            .map_or(Value::Null, |root| root.data.to_json());
        assert_eq!(
            value["v"],
            json!({"x": 1000.0, "y": 1.0, "z": "yes", "w": 0, "big": "Infinity"})
        );
    }

    #[test]
    fn locations_are_one_based() {
        let document = load("all:\n  hosts:\n    web1:\n", &PathBuf::from("t.yml")).expect("valid");
        let Some(Node {
            data: Data::Map(entries),
            ..
        }) = document.root
        else {
            panic!("mapping")
        };
        let (key, value) = &entries[0];
        assert_eq!((key.line, key.column), (1, 1));
        let Data::Map(inner) = &value.data else {
            panic!("mapping")
        };
        assert_eq!((inner[0].0.line, inner[0].0.column), (2, 3));
    }
}
