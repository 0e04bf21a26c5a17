//! Small re-implementations of Python built-ins whose exact behaviour shows up
//! in Ansible's results (`int()`, `float()`, `str.zfill`, `repr(float)`).

/// `string.ascii_letters`: Ansible's alphabetic host ranges index into it.
pub(crate) const ASCII_LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Python's `int(text)` for base 10: surrounding whitespace, an optional sign
/// and single underscores between digits are accepted.
pub(crate) fn int_from_str(text: &str) -> Option<i128> {
    let trimmed = text.trim();
    let (negative, digits) = split_sign(trimmed);
    let value = digits_value(digits, 10)?;
    Some(if negative { -value } else { value })
}

/// Python's `int(digits, radix)` where the caller already removed any sign and
/// prefix. Underscores between digits are accepted like Python does.
pub(crate) fn int_from_digits(digits: &str, radix: u32) -> Option<i128> {
    digits_value(digits, radix)
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest)
    } else {
        (false, text)
    }
}

fn digits_value(digits: &str, radix: u32) -> Option<i128> {
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let digit = c.to_digit(radix)?;
        value = value
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(digit))?;
    }
    Some(value)
}

/// Python's `float(text)`: whitespace is stripped, `inf`/`infinity`/`nan` are
/// accepted in any case, and so are forms such as `1.` and `.5`.
pub(crate) fn float_from_str(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.contains("__")
        || trimmed.starts_with('_')
        || trimmed.ends_with('_')
    {
        return None;
    }
    let cleaned: String = trimmed.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// Python's `str.zfill(width)`: pads with zeros after any leading sign.
pub(crate) fn zfill(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length >= width {
        return text.to_string();
    }
    let padding = "0".repeat(width - length);
    match text.chars().next() {
        Some(sign @ ('+' | '-')) => format!("{sign}{padding}{}", &text[1..]),
        _ => format!("{padding}{text}"),
    }
}

/// Python's `repr(float)`, which is what `json.dumps` writes for a float used
/// as a mapping key: shortest round-trip digits, exponent form outside
/// `1e-4 <= |x| < 1e16`.
pub(crate) fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".to_string()
        } else {
            "-inf".to_string()
        };
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0".to_string()
        } else {
            "0.0".to_string()
        };
    }
    // `{:e}` gives the shortest round-trip digits, e.g. `1.5e-7`.
    let scientific = format!("{value:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{mantissa}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    // Digits before the decimal point; negative means leading zeros after it.
    let point = exponent + 1;
    match usize::try_from(point) {
        Err(_) | Ok(0) => {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            format!("{sign}0.{zeros}{digits}")
        }
        Ok(point) if point >= digits.len() => {
            format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
        }
        Ok(point) => {
            let (whole, fraction) = digits.split_at(point);
            format!("{sign}{whole}.{fraction}")
        }
    }
}

/// Python's `int(value)` for a float: truncation toward zero, `None` when
/// Python would raise (infinite or NaN) or the result leaves `i128`.
#[allow(clippy::cast_possible_truncation)] // range checked just before
pub(crate) fn int_from_float(value: f64) -> Option<i128> {
    let truncated = value.trunc();
    (truncated.is_finite() && truncated.abs() < 1.7e38).then_some(truncated as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_parsing_follows_python() {
        assert_eq!(int_from_str(" 12 "), Some(12));
        assert_eq!(int_from_str("-1_0"), Some(-10));
        assert_eq!(int_from_str("+7"), Some(7));
        assert_eq!(int_from_str("_3"), None);
        assert_eq!(int_from_str("1__0"), None);
        assert_eq!(int_from_str("a"), None);
        assert_eq!(int_from_str(""), None);
        assert_eq!(int_from_digits("ff", 16), Some(255));
        assert_eq!(int_from_digits("", 2), None);
    }

    #[test]
    fn float_parsing_follows_python() {
        assert_eq!(float_from_str("1."), Some(1.0));
        assert_eq!(float_from_str(".5"), Some(0.5));
        assert_eq!(float_from_str("1e3"), Some(1000.0));
        assert_eq!(float_from_str(" -2.5 "), Some(-2.5));
        assert!(float_from_str("inf").is_some_and(f64::is_infinite));
        assert_eq!(float_from_str("."), None);
    }

    #[test]
    fn zfill_keeps_sign_first() {
        assert_eq!(zfill("7", 3), "007");
        assert_eq!(zfill("-7", 3), "-07");
        assert_eq!(zfill("1234", 2), "1234");
    }

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(float_repr(2.5), "2.5");
        assert_eq!(float_repr(2.0), "2.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-7), "1.5e-07");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(123_456_789.125), "123456789.125");
        assert_eq!(int_from_float(-2.7), Some(-2));
        assert_eq!(int_from_float(f64::NAN), None);
        assert_eq!(float_repr(-0.5), "-0.5");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
    }
}
