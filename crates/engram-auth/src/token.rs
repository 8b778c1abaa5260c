//! The cheap checks made on a token before any key is looked up or any
//! signature computed: its size, its shape, and its header.

use crate::AuthError;
use jsonwebtoken::Algorithm;

/// What the JOSE header of a token says, read without trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    /// The signing algorithm (never `none`: that is refused while parsing).
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
}

/// Checks the size and shape of `token` and reads its header.
///
/// Refuses, in this order: more than `max_bytes` bytes (before looking at a
/// single character), anything but three base64url segments, a header that
/// is not a JSON object with a string `alg`, `alg: none`, a `crit` header
/// (RFC 7515 §4.1.11: extensions we do not understand must be refused),
/// and an algorithm jsonwebtoken does not know.
pub(crate) fn parse(token: &str, max_bytes: usize) -> Result<TokenHeader, AuthError> {
    if token.len() > max_bytes {
        return Err(AuthError::TooLarge { limit: max_bytes });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "a JWT is three base64url segments separated by dots",
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("empty JWT header or payload"));
    }
    if ![payload, signature].iter().all(|s| is_base64url(s)) {
        return Err(AuthError::Malformed("JWT segments must be base64url"));
    }
    let raw = b64url_decode(header).ok_or(AuthError::Malformed("JWT header is not base64url"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed("JWT header is not JSON"))?;
    let obj = json
        .as_object()
        .ok_or(AuthError::Malformed("JWT header is not a JSON object"))?;
    let alg = match obj.get("alg") {
        Some(serde_json::Value::String(a)) => a.as_str(),
        Some(_) => return Err(AuthError::Malformed("JWT header alg must be a string")),
        None => return Err(AuthError::Malformed("JWT header has no alg")),
    };
    // Any spelling: some libraries compare case-insensitively.
    if alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::Unsigned);
    }
    if obj.contains_key("crit") {
        return Err(AuthError::Invalid(
            "critical header extensions (crit) are not supported".into(),
        ));
    }
    let kid = match obj.get("kid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(AuthError::Malformed("JWT header kid must be a string")),
    };
    let alg = alg
        .parse::<Algorithm>()
        .map_err(|_| AuthError::AlgorithmRefused {
            alg: printable(alg),
            accepted: "unknown algorithm".into(),
        })?;
    if signature.is_empty() {
        return Err(AuthError::BadSignature);
    }
    Ok(TokenHeader { alg, kid })
}

/// `s` cut to 32 characters of printable ASCII, for an error message
/// about a value the caller sent.
fn printable(s: &str) -> String {
    s.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes unpadded base64url (RFC 7515 §2), refusing padding, other
/// alphabets and non-zero trailing bits, as jsonwebtoken does.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn token(header: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64("{}"))
    }

    #[test]
    fn base64url_round_trips_and_refuses_other_alphabets() {
        for s in ["", "a", "ab", "abc", "{\"alg\":\"RS256\"}", "ü→😀"] {
            assert_eq!(b64url_decode(&b64(s)).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(b64url_decode("YQ=="), None);
        assert_eq!(b64url_decode("a+b/"), None);
        assert_eq!(b64url_decode("YR"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("Y"), None);
    }

    #[test]
    fn alg_none_in_any_spelling_is_unsigned() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = token(&format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}"));
            assert_eq!(parse(&t, 8192), Err(AuthError::Unsigned), "{alg}");
            // Without a signature segment too.
            let unsigned = format!("{}.{}.", b64(&format!("{{\"alg\":\"{alg}\"}}")), b64("{}"));
            assert_eq!(parse(&unsigned, 8192), Err(AuthError::Unsigned), "{alg}");
        }
    }

    #[test]
    fn shape_and_header_are_checked() {
        assert!(matches!(parse("abc", 8192), Err(AuthError::Malformed(_))));
        assert!(matches!(
            parse("a.b.c.d", 8192),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(parse(".b.c", 8192), Err(AuthError::Malformed(_))));
        assert!(matches!(
            parse(&token("[1]"), 8192),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse(&token("{\"alg\":5}"), 8192),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse(&token("{\"alg\":\"RS256\",\"kid\":1}"), 8192),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            parse(&token("{\"alg\":\"RS256\",\"crit\":[\"exp\"]}"), 8192),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            parse(&token("{\"alg\":\"XX999\"}"), 8192),
            Err(AuthError::AlgorithmRefused { .. })
        ));
        assert_eq!(
            parse(&token("{\"alg\":\"RS256\",\"kid\":\"k1\"}"), 8192),
            Ok(TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            })
        );
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let big = "x".repeat(8193);
        assert_eq!(parse(&big, 8192), Err(AuthError::TooLarge { limit: 8192 }));
    }
}
