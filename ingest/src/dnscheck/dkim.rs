//! DKIM key records (RFC 6376 3.6.1, RFC 8463 for ed25519): the TXT record at
//! `<selector>._domainkey.<domain>` in, the key type, the RSA modulus size and the
//! findings out. Pure.
//!
//! `mail-auth` reads a key to verify signatures with it but does not tell its size, and
//! a missing or revoked key is just a verification failure there; the size is read here
//! from the key's DER (SubjectPublicKeyInfo, or the bare PKCS#1 RSAPublicKey some DNS
//! panels publish) with a few lines of tag-length walking.

use base64::Engine as _;

use super::finding::{Area, Finding, Severity};

/// RSA keys shorter than this are ignored by the large receivers (RFC 8301: verifiers
/// must not accept keys under 1024 bits).
pub const MIN_RSA_BITS: u16 = 1024;
/// RSA keys shorter than this are a warning (RFC 8301 recommends at least 2048).
pub const GOOD_RSA_BITS: u16 = 2048;

/// One selector's key as read from DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkimKey {
    /// `rsa`, `ed25519`, or what the record names ('' when unreadable).
    pub key_type: String,
    /// The RSA modulus size (0 for other types, or when unreadable).
    pub bits: u16,
    /// `p=` is empty: the key was withdrawn.
    pub revoked: bool,
}

/// The key of `txt`, published at `selector`, and what is wrong with it.
pub fn parse(selector: &str, txt: &str) -> (DkimKey, Vec<Finding>) {
    let mut key = DkimKey::default();
    let mut findings = Vec::new();
    let mut finding = |severity: Severity, code: &'static str, text: String| {
        findings.push(Finding::new(
            Area::Dkim,
            severity,
            code,
            format!("selector {selector}: {text}"),
        ));
    };
    let mut key_type = "rsa".to_owned();
    let mut public_key: Option<String> = None;
    let mut testing = false;
    for (index, part) in txt
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let Some((tag, value)) = part.split_once('=') else {
            finding(
                Severity::Error,
                "dkim_syntax",
                format!("\"{part}\" is not a tag=value pair"),
            );
            continue;
        };
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match tag.trim() {
            "v" if index != 0 || value != "DKIM1" => finding(
                Severity::Error,
                "dkim_syntax",
                "v=DKIM1, if present, must come first".to_owned(),
            ),
            "k" => key_type = value.to_ascii_lowercase(),
            "p" => public_key = Some(value),
            "t" => testing = value.split(':').any(|flag| flag == "y"),
            _ => {}
        }
    }
    key.key_type = key_type.clone();
    let Some(public_key) = public_key else {
        finding(
            Severity::Error,
            "dkim_no_key",
            "the record has no p= tag: signatures with this selector fail".to_owned(),
        );
        return (key, findings);
    };
    if public_key.is_empty() {
        key.revoked = true;
        finding(
            Severity::Warning,
            "dkim_revoked",
            "the key is revoked (empty p=) but mail signed with it still arrives".to_owned(),
        );
        return (key, findings);
    }
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(public_key.as_bytes()) else {
        finding(
            Severity::Error,
            "dkim_bad_key",
            "p= is not valid base64: signatures with this selector fail".to_owned(),
        );
        return (key, findings);
    };
    match key_type.as_str() {
        "rsa" => match rsa_modulus_bits(&der) {
            Some(bits) => {
                key.bits = bits;
                if bits < MIN_RSA_BITS {
                    finding(
                        Severity::Error,
                        "dkim_short_key",
                        format!("a {bits}-bit RSA key: receivers ignore signatures made with it"),
                    );
                } else if bits < GOOD_RSA_BITS {
                    finding(
                        Severity::Warning,
                        "dkim_weak_key",
                        format!("a {bits}-bit RSA key: use {GOOD_RSA_BITS} bits"),
                    );
                }
            }
            None => finding(
                Severity::Error,
                "dkim_bad_key",
                "p= is not an RSA public key: signatures with this selector fail".to_owned(),
            ),
        },
        "ed25519" => {
            if der.len() != 32 {
                finding(
                    Severity::Error,
                    "dkim_bad_key",
                    format!("an ed25519 key is 32 bytes, this one {}", der.len()),
                );
            }
        }
        other => finding(
            Severity::Error,
            "dkim_unknown_key_type",
            format!("k={other}: receivers know only rsa and ed25519"),
        ),
    }
    if testing {
        finding(
            Severity::Info,
            "dkim_testing",
            "t=y: the key is in testing mode".to_owned(),
        );
    }
    (key, findings)
}

/// The size in bits of the modulus of a DER RSA key: a SubjectPublicKeyInfo (`SEQUENCE
/// { SEQUENCE { OID, NULL }, BIT STRING { RSAPublicKey } }`) or a bare RSAPublicKey
/// (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_modulus_bits(der: &[u8]) -> Option<u16> {
    let (tag, outer, _) = element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (first_tag, first, after_first) = element(outer)?;
    let rsa_public_key = match first_tag {
        // A bare RSAPublicKey: the first element is the modulus.
        0x02 => return integer_bits(first),
        // SubjectPublicKeyInfo: skip the algorithm, open the BIT STRING.
        0x30 => {
            let (bit_tag, bits, _) = element(after_first)?;
            if bit_tag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            &bits[1..]
        }
        _ => return None,
    };
    let (tag, sequence, _) = element(rsa_public_key)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, modulus, _) = element(sequence)?;
    (tag == 0x02).then_some(())?;
    integer_bits(modulus)
}

/// One DER element at the start of `input`: (tag, contents, what follows).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        length
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The bit length of a positive DER INTEGER's contents.
fn integer_bits(contents: &[u8]) -> Option<u16> {
    let start = contents.iter().position(|b| *b != 0)?;
    let significant = &contents[start..];
    let bits = significant.len() * 8 - significant[0].leading_zeros() as usize;
    u16::try_from(bits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SubjectPublicKeyInfo of an RSA key with a modulus of `bits` bits (the top bit
    /// set; the key need not be usable, only its size is read).
    fn spki(bits: usize) -> Vec<u8> {
        fn wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = contents.len();
            if len < 0x80 {
                out.push(len as u8);
            } else if len < 0x100 {
                out.extend([0x81, len as u8]);
            } else {
                out.extend([0x82, (len >> 8) as u8, len as u8]);
            }
            out.extend_from_slice(contents);
            out
        }
        let mut modulus = vec![0u8]; // leading zero: positive
        modulus.push(0x80);
        modulus.extend(std::iter::repeat_n(0xab, bits / 8 - 1));
        let rsa = wrap(
            0x30,
            &[wrap(0x02, &modulus), wrap(0x02, &[1, 0, 1])].concat(),
        );
        let algorithm = wrap(
            0x30,
            &[
                wrap(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                ),
                vec![0x05, 0x00],
            ]
            .concat(),
        );
        let bit_string = wrap(0x03, &[vec![0u8], rsa].concat());
        wrap(0x30, &[algorithm, bit_string].concat())
    }

    fn record(der: &[u8]) -> String {
        format!(
            "v=DKIM1; k=rsa; p={}",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn rsa_key_sizes_are_read_and_judged() {
        for (bits, code) in [
            (512, Some("dkim_short_key")),
            (1024, Some("dkim_weak_key")),
            (2048, None),
            (4096, None),
        ] {
            let (key, findings) = parse("s1", &record(&spki(bits)));
            assert_eq!(key.bits as usize, bits);
            assert_eq!(key.key_type, "rsa");
            assert_eq!(
                findings.first().map(|f| f.code),
                code,
                "{bits}: {findings:?}"
            );
        }
    }

    #[test]
    fn a_bare_pkcs1_key_is_read_too() {
        let spki = spki(2048);
        // The RSAPublicKey inside the BIT STRING.
        let (_, outer, _) = element(&spki).unwrap();
        let (_, _, after_algorithm) = element(outer).unwrap();
        let (_, bits, _) = element(after_algorithm).unwrap();
        assert_eq!(rsa_modulus_bits(&bits[1..]), Some(2048));
    }

    #[test]
    fn revoked_broken_and_odd_keys_are_named() {
        let code = |txt: &str| parse("s1", txt).1.first().map(|f| f.code);
        assert_eq!(code("v=DKIM1; p="), Some("dkim_revoked"));
        assert!(parse("s1", "v=DKIM1; p=").0.revoked);
        assert_eq!(code("v=DKIM1; k=rsa"), Some("dkim_no_key"));
        assert_eq!(code("v=DKIM1; p=!!!"), Some("dkim_bad_key"));
        assert_eq!(code("v=DKIM1; p=AAAA"), Some("dkim_bad_key"));
        assert_eq!(code("k=dsa; p=AAAA"), Some("dkim_unknown_key_type"));
        let ed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(code(&format!("v=DKIM1; k=ed25519; p={ed}")), None);
        assert_eq!(
            code(&format!("k=rsa; v=DKIM1; p={ed}")),
            Some("dkim_syntax")
        );
        assert!(parse("s1", "v=DKIM1; p=").1[0]
            .text
            .starts_with("selector s1: "));
    }

    #[test]
    fn truncated_der_is_refused_not_read_past() {
        let der = spki(2048);
        for cut in [1, 5, 20, der.len() / 2, der.len() - 1] {
            assert_eq!(rsa_modulus_bits(&der[..cut]), None, "cut at {cut}");
        }
    }
}
