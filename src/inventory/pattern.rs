//! Host keys of a `hosts:` mapping: an optional `:port` suffix and `[a:b]`
//! ranges, expanded the way Ansible's yaml inventory plugin does it.
//!
//! Ansible first tries to read the key as `address[:port]`; only when the
//! address part is a valid hostname, IPv4 or IPv6 address (ranges allowed)
//! is the port split off, otherwise the whole key is the host name. Any `[`
//! left in the name then starts a range, expanded left to right.

use super::python;
use crate::limits::MAX_HOSTS_PER_PATTERN;

fn too_many_hosts() -> String {
    format!("expands to more than {MAX_HOSTS_PER_PATTERN} hosts, the limit")
}

/// A host key split into its address pattern and optional port.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostPattern {
    pub(crate) pattern: String,
    pub(crate) port: Option<u64>,
}

/// Splits `key` into address and port like Ansible's `parse_address` with
/// ranges allowed, falling back to the whole key when it is not an address.
pub(crate) fn split_port(key: &str) -> HostPattern {
    let mut address = key.to_string();
    let mut port = None;
    // Ansible tries `[host]:port` and then `host:port` on what is left.
    if let Some((inner, digits)) = bracketed_host_port(&address) {
        port = Some(digits);
        address = inner;
    }
    if let Some((inner, digits)) = host_port(&address) {
        port = Some(digits);
        address = inner;
    }
    if is_ipv4(&address) || is_ipv6(&address) || is_hostname(&address) {
        HostPattern {
            pattern: address,
            port: port.and_then(|digits| digits.parse().ok()),
        }
    } else {
        HostPattern {
            pattern: key.to_string(),
            port: None,
        }
    }
}

/// `[X]:digits` with the longest X: the last `]:` followed only by digits.
fn bracketed_host_port(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix('[')?;
    let split = rest.rfind("]:")?;
    let (inner, digits) = (&rest[..split], &rest[split + 2..]);
    if inner.is_empty()
        || inner.contains('\n')
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((inner.to_string(), digits.to_string()))
}

/// `X:digits` where X has no `:` outside complete `[...]` groups.
fn host_port(text: &str) -> Option<(String, String)> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b':' | b']' => break,
            b'[' => match text[index..].find(']') {
                Some(close) => index += close + 1,
                None => break,
            },
            _ => index += 1,
        }
    }
    if bytes.get(index) != Some(&b':') {
        return None;
    }
    let digits = &text[index + 1..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((text[..index].to_string(), digits.to_string()))
}

/// Which characters a `[begin:end(:step)]` range may use at this position.
#[derive(Clone, Copy)]
enum RangeKind {
    /// Decimal numbers (IPv4 octets).
    Numeric,
    /// Hexadecimal numbers (IPv6 groups).
    Hexadecimal,
    /// Decimal numbers or single letters (hostname labels).
    Alphanumeric,
}

/// If `text` starts with a valid range, returns its length in bytes.
fn range_length(text: &str, kind: RangeKind) -> Option<usize> {
    let inner_end = text.strip_prefix('[')?.find(']')?;
    let inner = &text[1..=inner_end];
    let parts: Vec<&str> = inner.split(':').collect();
    if parts.len() != 2 && parts.len() != 3 {
        return None;
    }
    let decimal = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let bounds_ok = match kind {
        RangeKind::Numeric => decimal(parts[0]) && decimal(parts[1]),
        RangeKind::Hexadecimal => parts[..2]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_hexdigit())),
        RangeKind::Alphanumeric => {
            let letter =
                |part: &str| part.len() == 1 && part.bytes().all(|b| b.is_ascii_alphabetic());
            (decimal(parts[0]) && decimal(parts[1])) || (letter(parts[0]) && letter(parts[1]))
        }
    };
    let step_ok = parts.get(2).is_none_or(|step| decimal(step));
    (bounds_ok && step_ok).then_some(inner_end + 2)
}

/// An IPv4 address whose octets may be numeric ranges.
fn is_ipv4(text: &str) -> bool {
    let octets: Vec<&str> = text.split('.').collect();
    octets.len() == 4 && octets.iter().all(|octet| is_ipv4_octet(octet))
}

fn is_ipv4_octet(octet: &str) -> bool {
    if octet.starts_with('[') {
        return range_length(octet, RangeKind::Numeric) == Some(octet.len());
    }
    (1..=3).contains(&octet.len())
        && octet.bytes().all(|b| b.is_ascii_digit())
        && octet.parse::<u32>().is_ok_and(|value| value <= 255)
}

/// One IPv6 group: 1-4 hex digits or a hexadecimal range.
fn is_ipv6_group(group: &str) -> bool {
    if group.starts_with('[') {
        return range_length(group, RangeKind::Hexadecimal) == Some(group.len());
    }
    (1..=4).contains(&group.len()) && group.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Splits on `:` outside `[...]` ranges.
fn split_colons(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// An IPv6 address (groups may be ranges), including the forms with a
/// dotted IPv4-style tail that Ansible accepts.
fn is_ipv6(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let dotted_tail = |tail: &str| {
        let groups: Vec<&str> = tail.split('.').collect();
        groups.len() == 4 && groups.iter().all(|group| is_ipv6_group(group))
    };
    let dotted_forms = [
        lower.strip_prefix("0:0:0:0:0:0:").is_some_and(dotted_tail),
        lower
            .strip_prefix("0:0:0:0:0:ffff:")
            .is_some_and(dotted_tail),
        lower.strip_prefix("::").is_some_and(|tail| {
            dotted_tail(tail) || tail.strip_prefix("ffff:").is_some_and(dotted_tail)
        }),
    ];
    if dotted_forms.contains(&true) {
        return true;
    }
    let groups_valid = |side: &str| -> Option<usize> {
        if side.is_empty() {
            return Some(0);
        }
        let groups = split_colons(side);
        groups
            .iter()
            .all(|group| is_ipv6_group(group))
            .then_some(groups.len())
    };
    match find_double_colon(&lower) {
        None => groups_valid(&lower) == Some(8),
        Some(index) => {
            let (left, right) = (&lower[..index], &lower[index + 2..]);
            match (groups_valid(left), groups_valid(right)) {
                (Some(left), Some(right)) => left <= 6 && right <= 6 && left + right <= 7,
                _ => false,
            }
        }
    }
}

/// Position of the single `::` outside ranges (none if there are two).
fn find_double_colon(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut found = None;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(index + 1) == Some(&b':') => {
                if found.is_some() {
                    return None;
                }
                found = Some(index);
                index += 1;
            }
            _ => {}
        }
        index += 1;
    }
    found
}

/// A hostname: dot-separated labels of word characters and dashes (and
/// alphanumeric ranges) that do not end in `-` or `_`.
fn is_hostname(text: &str) -> bool {
    text.split('.').all(is_label)
}

fn is_label(label: &str) -> bool {
    let mut index = 0;
    let mut last: Option<char> = None;
    while index < label.len() {
        let rest = &label[index..];
        if rest.starts_with('[') {
            match range_length(rest, RangeKind::Alphanumeric) {
                Some(length) => {
                    index += length;
                    last = Some(']');
                    continue;
                }
                None => return false,
            }
        }
        let Some(character) = rest.chars().next() else {
            return false;
        };
        let word = character.is_alphanumeric() || character == '_';
        if !(word || (character == '-' && index > 0)) {
            return false;
        }
        index += character.len_utf8();
        last = Some(character);
    }
    matches!(last, Some(character) if character != '-' && character != '_')
}

/// Expands every `[begin:end(:step)]` range in `pattern`, left to right,
/// with the quirks of Ansible's `expand_hostname_range`: letters index into
/// `a..zA..Z`, a zero-padded begin pads all numbers, an empty begin means 0,
/// and a numeric range whose step goes the wrong way yields no hosts.
pub(crate) fn expand_ranges(pattern: &str) -> Result<Vec<String>, String> {
    // Names visited, not only kept: a nested range that ends in an empty one
    // keeps nothing but would still visit the product of the ranges.
    let mut budget = 4 * MAX_HOSTS_PER_PATTERN;
    expand_within(pattern, &mut budget)
}

fn expand_within(pattern: &str, budget: &mut usize) -> Result<Vec<String>, String> {
    if !pattern.contains('[') {
        return Ok(vec![pattern.to_string()]);
    }
    // Ansible turns the first `[` and the first `]` into `|` and splits.
    let marked = pattern.replacen('[', "|", 1).replacen(']', "|", 1);
    let pieces: Vec<&str> = marked.split('|').collect();
    let [head, range, tail] = pieces[..] else {
        return Err(format!(
            "expected one `[begin:end]` group at a time, found {} parts",
            pieces.len()
        ));
    };
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err("host range must be begin:end or begin:end:step".to_string());
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step_text = bounds.get(2).copied().unwrap_or("1");
    if end.is_empty() {
        return Err("host range must specify end value".to_string());
    }
    let width = if begin.starts_with('0') && begin.chars().count() > 1 {
        let width = begin.chars().count();
        if width != end.chars().count() {
            return Err("host range must specify equal-length begin and end formats".to_string());
        }
        Some(width)
    } else {
        None
    };
    let format_item = |item: String| match width {
        Some(width) => python::zfill(&item, width),
        None => item,
    };

    let items: Vec<String> = if let Some(letters) = alphabetic_range(begin, end, step_text)? {
        letters
    } else {
        let not_a_number = |text: &str| format!("invalid literal for int() with base 10: `{text}`");
        let first = python::int_from_str(begin).ok_or_else(|| not_a_number(begin))?;
        let last = python::int_from_str(end).ok_or_else(|| not_a_number(end))?;
        let step = python::int_from_str(step_text).ok_or_else(|| not_a_number(step_text))?;
        numeric_range(first, last + 1, step)?
            .into_iter()
            .map(|number| number.to_string())
            .collect()
    };

    let mut hosts = Vec::new();
    for item in items {
        *budget = budget.checked_sub(1).ok_or_else(too_many_hosts)?;
        let name = format!("{head}{}{tail}", format_item(item));
        if name.contains('[') {
            hosts.extend(expand_within(&name, budget)?);
        } else {
            hosts.push(name);
        }
        // Nested ranges multiply; stop once the product passes the limit,
        // having held at most one range's worth more than it.
        if hosts.len() > MAX_HOSTS_PER_PATTERN {
            return Err(too_many_hosts());
        }
    }
    Ok(hosts)
}

/// `Ok(None)` when the bounds are not letters, so the numeric form applies.
fn alphabetic_range(
    begin: &str,
    end: &str,
    step_text: &str,
) -> Result<Option<Vec<String>>, String> {
    // Ansible looks the bounds up as substrings of `a..zA..Z`.
    let (Some(first), Some(last)) = (
        python::ASCII_LETTERS.find(begin),
        python::ASCII_LETTERS.find(end),
    ) else {
        return Ok(None);
    };
    if first > last {
        return Err("host range must have begin <= end".to_string());
    }
    let Some(step) = python::int_from_str(step_text).filter(|step| *step != 0) else {
        return Ok(None); // Python raises ValueError here and falls back to numbers
    };
    // A negative step selects nothing, as Python's slice does here.
    let Ok(step) = usize::try_from(step) else {
        return Ok(Some(Vec::new()));
    };
    let letters = python::ASCII_LETTERS.get(first..=last).unwrap_or_default();
    Ok(Some(
        letters.chars().step_by(step).map(String::from).collect(),
    ))
}

/// Python's `range(first, end_exclusive, step)`.
fn numeric_range(first: i128, end_exclusive: i128, step: i128) -> Result<Vec<i128>, String> {
    if step == 0 {
        return Err("range() arg 3 must not be zero".to_string());
    }
    let count = if step > 0 {
        (end_exclusive - first + step - 1).div_euclid(step)
    } else {
        (first - end_exclusive - step - 1).div_euclid(-step)
    };
    if count > MAX_HOSTS_PER_PATTERN as i128 {
        return Err(too_many_hosts());
    }
    let mut numbers = Vec::new();
    let mut current = first;
    while (step > 0 && current < end_exclusive) || (step < 0 && current > end_exclusive) {
        numbers.push(current);
        current += step;
    }
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_ranges_that_keep_nothing_are_bounded_too() {
        // Found by fuzzing: 9949 × 9949 names visited, none kept.
        let error = expand_ranges("10([1:9949]([1:9949]002[9:00]").unwrap_err();
        assert!(error.contains("hosts, the limit"), "{error}");
        assert_eq!(expand_ranges("h[0:99][0:99]").unwrap().len(), 10_000);
    }

    fn expand(pattern: &str) -> Vec<String> {
        expand_ranges(pattern).unwrap_or_else(|error| panic!("{pattern}: {error}"))
    }

    #[test]
    fn numeric_ranges_keep_padding_and_step() {
        assert_eq!(expand("web[01:03]"), ["web01", "web02", "web03"]);
        assert_eq!(expand("s[1:10:3].x"), ["s1.x", "s4.x", "s7.x", "s10.x"]);
        assert_eq!(expand("z[0:3:2]"), ["z0", "z2"]);
        assert_eq!(expand("n[:2]"), ["n0", "n1", "n2"]);
        assert_eq!(expand("t[ 1:3]"), ["t1", "t2", "t3"]);
        assert!(expand("neg[3:1]").is_empty());
        assert_eq!(expand("d[5:1:-2]"), ["d5", "d3"]);
    }

    #[test]
    fn alphabetic_ranges_use_ascii_letters() {
        assert_eq!(expand("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("q[y:B]"), ["qy", "qz", "qA", "qB"]);
        assert_eq!(expand("m[a:b][1:2]"), ["ma1", "ma2", "mb1", "mb2"]);
        assert_eq!(
            expand("r[ab:bc]").len(),
            2,
            "bounds are substrings of a..zA..Z"
        );
    }

    #[test]
    fn invalid_ranges_are_errors() {
        assert!(
            expand_ranges("t[01:3]")
                .unwrap_err()
                .contains("equal-length")
        );
        assert!(
            expand_ranges("t[1:3:0]")
                .unwrap_err()
                .contains("must not be zero")
        );
        assert!(
            expand_ranges("t[c:a]")
                .unwrap_err()
                .contains("begin <= end")
        );
        assert!(expand_ranges("t[aa:bc]").unwrap_err().contains("`aa`"));
        assert!(expand_ranges("t[1:]").unwrap_err().contains("end value"));
        assert!(
            expand_ranges("t[1:2:3:4]")
                .unwrap_err()
                .contains("begin:end")
        );
        assert!(expand_ranges("t[1:2").is_err());
        assert!(expand_ranges("t[a:c:0]").unwrap_err().contains("`a`"));
        assert!(
            expand_ranges("h[0:9999][0:9999]")
                .unwrap_err()
                .contains("more than 10000 hosts"),
            "nested ranges multiply"
        );
        assert_eq!(expand("h[1:10000]").len(), 10_000);
    }

    #[test]
    fn ports_split_only_from_valid_addresses() {
        let split = |key: &str| {
            let HostPattern { pattern, port } = split_port(key);
            (pattern, port)
        };
        assert_eq!(split("db-[a:c]:2222"), ("db-[a:c]".to_string(), Some(2222)));
        assert_eq!(split("1.2.3.4:99"), ("1.2.3.4".to_string(), Some(99)));
        assert_eq!(split("[::1]:5"), ("::1".to_string(), Some(5)));
        assert_eq!(
            split("[fe80::[1:2]]:22"),
            ("fe80::[1:2]".to_string(), Some(22))
        );
        assert_eq!(split("h_:22"), ("h_:22".to_string(), None));
        assert_eq!(split("p0:0"), ("p0".to_string(), Some(0)));
        assert_eq!(split("fe80::1"), ("fe80::1".to_string(), None));
        assert_eq!(split("web1"), ("web1".to_string(), None));
        assert_eq!(split("foo bar:22"), ("foo bar:22".to_string(), None));
    }

    #[test]
    fn address_shapes() {
        assert!(is_ipv4("10.0.[1:3].1"));
        assert!(!is_ipv4("256.1.1.1"));
        assert!(is_ipv6("::"));
        assert!(is_ipv6("1:2:3:4:5:6:7:8"));
        assert!(!is_ipv6("1:2:3:4:5:6:7:8:9"));
        assert!(is_ipv6("::ffff:1.2.3.4"));
        assert!(!is_ipv6("1::2::3"));
        assert!(is_hostname("_a.example-1.com"));
        assert!(!is_hostname("a-"));
        assert!(!is_hostname("-a"));
    }
}
