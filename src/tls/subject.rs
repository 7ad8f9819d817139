//! The user name in a client certificate, as RabbitMQ derives it for SASL EXTERNAL
//! (`rabbit_ssl:peer_cert_auth_name`, `rabbit_cert_info`): the subject's common name(s),
//! or the whole subject DN in RabbitMQ's RFC 4514-ish form — RDNs last-first joined with
//! ",", multi-valued RDNs joined with "+", values escaped as `escape_rdn_value` does.
//!
//! Only the subject of an already-verified certificate is read, with a small DER walker:
//! every length is checked against what is left, so a malformed certificate yields `None`,
//! never a panic.

use crate::config::LoginFrom;

/// The name `login_from` picks out of the DER certificate `cert`; `None` when it has none
/// (or the certificate does not parse).
pub fn login_name(cert: &[u8], login_from: LoginFrom) -> Option<String> {
    let rdns = subject(cert)?;
    match login_from {
        LoginFrom::CommonName => {
            let cns: Vec<String> = rdns
                .iter()
                .flatten()
                .filter(|(oid, _)| *oid == CN)
                .map(|(_, v)| value_text(v))
                .collect();
            (!cns.is_empty()).then(|| cns.join(","))
        }
        LoginFrom::DistinguishedName => Some(format_dn(&rdns)),
    }
}

/// An attribute: its OID's content bytes and its value's (tag, content).
type Attribute<'a> = (&'a [u8], (u8, &'a [u8]));

const CN: &[u8] = &[0x55, 0x04, 0x03];

/// RabbitMQ's short names (`rabbit_cert_info:format_rdn`), by OID content bytes.
const NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x04], "SN"),
    (&[0x55, 0x04, 0x2a], "GIVENNAME"),
    (&[0x55, 0x04, 0x2b], "INITIALS"),
    (&[0x55, 0x04, 0x2c], "GENERATIONQUALIFIER"),
    (CN, "CN"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x0c], "TITLE"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x05], "SERIALNUMBER"),
    (&[0x55, 0x04, 0x41], "PSEUDONYM"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "EMAILADDRESS",
    ),
    (&[0x55, 0x04, 0x09], "STREET"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// The whole DN: last RDN first, as RabbitMQ (and `openssl x509 -nameopt RFC2253`) print it.
fn format_dn(rdns: &[Vec<Attribute<'_>>]) -> String {
    let parts: Vec<String> = rdns
        .iter()
        .rev()
        .map(|rdn| {
            let avas: Vec<String> = rdn
                .iter()
                .map(|(oid, value)| {
                    let name = NAMES
                        .iter()
                        .find(|(o, _)| o == oid)
                        .map_or_else(|| dotted(oid), |(_, n)| (*n).to_string());
                    format!("{name}={}", escape(value_text(value).as_bytes()))
                })
                .collect();
            avas.join("+")
        })
        .collect();
    parts.join(",")
}

/// `escape_rdn_value`: a leading space or '#', a trailing space, and `"+,;<>\` get a
/// backslash; bytes outside 32..126 (so every byte of a non-ASCII character) become `\XX`.
fn escape(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, &c) in v.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == v.len();
        let leading = first && c == b'#';
        let edge_space = c == b' ' && (first || last);
        if leading || edge_space || b"\"+,;<>\\".contains(&c) {
            out.push('\\');
            out.push(c as char);
        } else if !(32..126).contains(&c) {
            out.push_str(&format!("\\{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
    out
}

/// A directory string's text (UTF-8, Printable, IA5, Teletex as Latin-1, BMP, Universal).
fn value_text((tag, bytes): &(u8, &[u8])) -> String {
    match tag {
        0x1e => char::decode_utf16(
            bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        0x1c => bytes
            .chunks_exact(4)
            .map(|q| {
                char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        0x14 => bytes.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// An OID's dotted form (for attribute types RabbitMQ has no name for).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut n: u64 = 0;
    for &b in oid {
        n = (n << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (n / 40).min(2);
                arcs.push(first);
                arcs.push(n - first * 40);
            } else {
                arcs.push(n);
            }
            n = 0;
        }
    }
    let parts: Vec<String> = arcs.iter().map(u64::to_string).collect();
    parts.join(".")
}

/// The certificate's subject: its RDNs in order, each a list of attributes.
fn subject(cert: &[u8]) -> Option<Vec<Vec<Attribute<'_>>>> {
    let (tag, certificate, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(certificate)?;
    if tag != 0x30 {
        return None;
    }
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let skip = if tbs.first() == Some(&0xa0) { 5 } else { 4 };
    for _ in 0..skip {
        tbs = tlv(tbs)?.2;
    }
    let (tag, mut name, _) = tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = tlv(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (tag, mut ava, rest) = tlv(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (tag, oid, rest) = tlv(ava)?;
            ava = rest;
            if tag != 0x06 {
                return None;
            }
            let (tag, value, _) = tlv(ava)?;
            rdn.push((oid, (tag, value)));
        }
        rdns.push(rdn);
    }
    Some(rdns)
}

/// One DER element: (tag, content, what follows). Single-byte tags only (all a subject
/// uses); lengths in short or long form up to 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rabbitmq() {
        assert_eq!(escape(b"guest"), "guest");
        assert_eq!(escape(b" a b "), "\\ a b\\ ");
        assert_eq!(escape(b"#1#"), "\\#1#");
        assert_eq!(
            escape(b"a,b+c;d<e>f\\g\"h"),
            "a\\,b\\+c\\;d\\<e\\>f\\\\g\\\"h"
        );
        assert_eq!(escape("é~".as_bytes()), "\\C3\\A9\\7E");
        assert_eq!(escape(b" "), "\\ ");
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }

    #[test]
    fn malformed_input_is_none() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x02\x30\x05",
        ] {
            assert!(login_name(bad, LoginFrom::DistinguishedName).is_none());
        }
    }
}
