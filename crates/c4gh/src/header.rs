//! The Crypt4GH header: bounded parsing, opening packets with one or more secret keys, building
//! headers for several recipients, and re-encrypting a header for new recipients.
//!
//! Wire format (all integers little-endian): the preamble `crypt4gh` ‖ version `1` (u32) ‖
//! packet count (u32), then each packet as length (u32, including itself) ‖ method (u32, `0` =
//! X25519 + ChaCha20-IETF-Poly1305) ‖ writer public key (32) ‖ nonce (12) ‖ ciphertext ‖ tag (16).
//! A decrypted packet is a data-key packet (type `0` ‖ method `0` ‖ 32-byte key) or an edit-list
//! packet (type `1` ‖ count (u32) ‖ count × u64).
//!
//! Parsing never allocates more than [`MAX_HEADER_LEN`] and rejects more than [`MAX_PACKETS`]
//! packets. Readers skip packets their keys cannot open and fail only when none opens.

use std::io::Read;

use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroizing;

use crate::body::DataKey;
use crate::crypto::{self, Aead, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::keys::{PublicKey, SecretKey};

/// The magic bytes opening every Crypt4GH file.
pub const MAGIC: &[u8; 8] = b"crypt4gh";
/// The only format version.
pub const VERSION: u32 = 1;
/// Length of the preamble (magic, version, packet count).
pub const PREAMBLE_LEN: usize = 16;
/// Largest header accepted (about 600 recipients).
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Most packets accepted in one header.
pub const MAX_PACKETS: u32 = 1024;
/// Packet encryption method 0: X25519 + ChaCha20-IETF-Poly1305.
const METHOD_X25519_CHACHA20_POLY1305: u32 = 0;
/// Decrypted packet type of a data-key packet.
const PACKET_DATA_KEY: u32 = 0;
/// Decrypted packet type of an edit-list packet.
const PACKET_EDIT_LIST: u32 = 1;
/// Smallest packet length field accepted: length and method.
const MIN_PACKET_LEN: u32 = 8;

/// Whether a byte prefix holds a complete header, as returned by [`header_len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderLen {
    /// The header is exactly this many bytes (the prefix may not hold all of them yet).
    Complete(usize),
    /// At least this many bytes (in total) are needed to learn the length.
    NeedMore(usize),
}

/// Learns a header's byte length from a prefix of the file (its preamble and packet length
/// fields), so a client can read exactly the header off a stream.
pub fn header_len(prefix: &[u8]) -> Result<HeaderLen> {
    let Some(preamble) = prefix.first_chunk::<PREAMBLE_LEN>() else {
        check_magic_prefix(prefix)?;
        return Ok(HeaderLen::NeedMore(PREAMBLE_LEN));
    };
    let count = check_preamble(preamble)?;
    let mut pos = PREAMBLE_LEN;
    for index in 0..count as usize {
        let Some(len) = prefix.get(pos..pos + 4) else {
            return Ok(HeaderLen::NeedMore(pos + 4));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        pos = check_packet_len(index, len, pos)?;
    }
    Ok(HeaderLen::Complete(pos))
}

fn check_magic_prefix(prefix: &[u8]) -> Result<()> {
    let n = prefix.len().min(MAGIC.len());
    if prefix[..n] != MAGIC[..n] {
        return Err(Error::NotCrypt4gh);
    }
    Ok(())
}

/// Validates the preamble and returns the packet count.
fn check_preamble(preamble: &[u8; PREAMBLE_LEN]) -> Result<u32> {
    if &preamble[..8] != MAGIC {
        return Err(Error::NotCrypt4gh);
    }
    let version = u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
    if version != VERSION {
        return Err(Error::UnsupportedVersion { version });
    }
    let count = u32::from_le_bytes([preamble[12], preamble[13], preamble[14], preamble[15]]);
    if count == 0 || count > MAX_PACKETS {
        return Err(Error::PacketCount {
            count,
            max: MAX_PACKETS,
        });
    }
    Ok(count)
}

/// Validates packet `index`'s length field found at header offset `pos`; returns the offset
/// after the packet.
fn check_packet_len(index: usize, len: u32, pos: usize) -> Result<usize> {
    if len < MIN_PACKET_LEN {
        return Err(Error::PacketLength { index, len });
    }
    let end = pos as u64 + u64::from(len);
    if end > MAX_HEADER_LEN as u64 {
        return Err(Error::HeaderTooLarge {
            len: end,
            max: MAX_HEADER_LEN,
        });
    }
    Ok(end as usize)
}

/// Reads exactly one header off a stream, leaving it positioned at the first body byte.
pub fn read_header<R: Read>(reader: &mut R) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(wanted) = next_read(&bytes)? {
        let start = bytes.len();
        bytes.resize(wanted, 0);
        let got = read_full(reader, &mut bytes[start..])?;
        check_read(&mut bytes, start + got)?;
    }
    Ok(bytes)
}

/// Reads exactly one header off an async stream, leaving it positioned at the first body byte.
pub async fn read_header_async<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(wanted) = next_read(&bytes)? {
        let start = bytes.len();
        bytes.resize(wanted, 0);
        let got = read_full_async(reader, &mut bytes[start..]).await?;
        check_read(&mut bytes, start + got)?;
    }
    Ok(bytes)
}

/// The total length the header prefix `bytes` must grow to before more is known, or `None`
/// once it holds exactly one complete header. Reading only up to there never consumes a body
/// byte.
fn next_read(bytes: &[u8]) -> Result<Option<usize>> {
    Ok(match header_len(bytes)? {
        HeaderLen::Complete(len) if len == bytes.len() => None,
        HeaderLen::Complete(wanted) | HeaderLen::NeedMore(wanted) => Some(wanted),
    })
}

/// After a read that filled `bytes` up to `filled`: a short read is a truncated header, unless
/// what did arrive is already malformed, which is the better error.
fn check_read(bytes: &mut Vec<u8>, filled: usize) -> Result<()> {
    if filled == bytes.len() {
        return Ok(());
    }
    let needed = bytes.len();
    bytes.truncate(filled);
    header_len(bytes)?;
    Err(Error::TruncatedHeader {
        got: filled,
        needed,
    })
}

fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}

async fn read_full_async<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A parsed, still encrypted header: its packets as they appear on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedHeader {
    /// Each packet without its 4-byte length field (method ‖ writer key ‖ nonce ‖ sealed data).
    packets: Vec<Vec<u8>>,
}

impl EncryptedHeader {
    /// Parses a header that is exactly `bytes` (trailing data is an error).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (header, used) = Self::parse_prefix(bytes)?;
        if used != bytes.len() {
            return Err(Error::TrailingData {
                extra: bytes.len() - used,
            });
        }
        Ok(header)
    }

    /// Parses the header at the start of `bytes`; returns it and its length.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Self, usize)> {
        let len = match header_len(bytes)? {
            HeaderLen::Complete(len) if len <= bytes.len() => len,
            HeaderLen::Complete(needed) | HeaderLen::NeedMore(needed) => {
                return Err(Error::TruncatedHeader {
                    got: bytes.len(),
                    needed,
                });
            }
        };
        let mut packets = Vec::new();
        let mut pos = PREAMBLE_LEN;
        while pos < len {
            let plen =
                u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            packets.push(bytes[pos + 4..pos + plen].to_vec());
            pos += plen;
        }
        Ok((EncryptedHeader { packets }, len))
    }

    /// Number of packets.
    pub fn packet_count(&self) -> usize {
        self.packets.len()
    }

    /// Serialises the header.
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&self.packets)
    }

    /// Opens the header with any of `keys`: packets no key opens are skipped. With `sender`, only
    /// packets written by that public key count. Fails with [`Error::NoMatchingKey`] when no
    /// data-key packet opens.
    pub fn open(&self, keys: &[&SecretKey], sender: Option<&PublicKey>) -> Result<OpenedHeader> {
        let decrypted = self.decrypt_packets(keys, sender)?;
        let mut data_keys = Vec::new();
        let mut edit_list = None;
        for (index, plain) in decrypted
            .iter()
            .filter_map(|(i, p)| p.as_ref().map(|p| (*i, p)))
        {
            match classify(index, plain)? {
                Packet::DataKey(key) => data_keys.push(key),
                Packet::EditList(list) => {
                    if edit_list.replace(list).is_some() {
                        return Err(Error::MultipleEditLists);
                    }
                }
            }
        }
        if data_keys.is_empty() {
            return Err(Error::NoMatchingKey);
        }
        Ok(OpenedHeader {
            data_keys,
            edit_list,
        })
    }

    /// Tries every key on every packet: `(index, Some(plaintext))` for packets that opened.
    fn decrypt_packets(
        &self,
        keys: &[&SecretKey],
        sender: Option<&PublicKey>,
    ) -> Result<Vec<(usize, Option<PacketPlaintext>)>> {
        let mut decrypted = Vec::with_capacity(self.packets.len());
        for (i, packet) in self.packets.iter().enumerate() {
            let mut plain = None;
            for key in keys {
                plain = open_packet(packet, key, sender)?;
                if plain.is_some() {
                    break;
                }
            }
            decrypted.push((i, plain));
        }
        Ok(decrypted)
    }
}

/// The decrypted content of a header packet.
type PacketPlaintext = Zeroizing<Vec<u8>>;

/// Opens one packet (without its length field) with one key: `None` when it is not for this
/// key (or not from `sender`).
fn open_packet(
    packet: &[u8],
    key: &SecretKey,
    sender: Option<&PublicKey>,
) -> Result<Option<PacketPlaintext>> {
    let (Some(method), Some(writer)) = (
        packet.first_chunk::<4>(),
        packet.get(4..).and_then(|p| p.first_chunk::<KEY_LEN>()),
    ) else {
        return Ok(None);
    };
    if u32::from_le_bytes(*method) != METHOD_X25519_CHACHA20_POLY1305
        || packet.len() < 4 + KEY_LEN + NONCE_LEN + TAG_LEN
    {
        return Ok(None);
    }
    let writer = PublicKey::from_bytes(*writer);
    if sender.is_some_and(|s| *s != writer) {
        return Ok(None);
    }
    let dh = key.diffie_hellman(&writer);
    let shared = crypto::shared_key(&dh, key.public_key().as_bytes(), writer.as_bytes());
    let mut sealed = Zeroizing::new(packet[4 + KEY_LEN..].to_vec());
    let Some(len) = Aead::new(&shared).open(&mut sealed)?.map(|p| p.len()) else {
        return Ok(None);
    };
    let mut plain = Zeroizing::new(Vec::with_capacity(len));
    plain.extend_from_slice(&sealed[NONCE_LEN..NONCE_LEN + len]);
    Ok(Some(plain))
}

/// Seals one packet plaintext for one recipient; returns the packet without its length field.
fn seal_packet(plain: &[u8], writer: &SecretKey, recipient: &PublicKey) -> Result<Vec<u8>> {
    let dh = writer.diffie_hellman(recipient);
    let shared = crypto::shared_key(&dh, recipient.as_bytes(), writer.public_key().as_bytes());
    let sealed = crypto::seal_with_random_nonce(&shared, plain)?;
    let mut packet = Vec::with_capacity(4 + KEY_LEN + sealed.len());
    packet.extend_from_slice(&METHOD_X25519_CHACHA20_POLY1305.to_le_bytes());
    packet.extend_from_slice(writer.public_key().as_bytes());
    packet.extend_from_slice(&sealed);
    Ok(packet)
}

fn serialize(packets: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = PREAMBLE_LEN + packets.iter().map(|p| p.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(packets.len() as u32).to_le_bytes());
    for packet in packets {
        out.extend_from_slice(&((packet.len() + 4) as u32).to_le_bytes());
        out.extend_from_slice(packet);
    }
    out
}

enum Packet {
    DataKey(DataKey),
    EditList(Vec<u64>),
}

fn classify(index: usize, plain: &[u8]) -> Result<Packet> {
    let invalid = |reason: String| Error::InvalidPacket { index, reason };
    let (kind, rest) = plain.split_first_chunk::<4>().ok_or_else(|| {
        invalid(format!(
            "{} bytes is too short for a packet type",
            plain.len()
        ))
    })?;
    match u32::from_le_bytes(*kind) {
        PACKET_DATA_KEY => {
            let (method, key) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("data-key packet without an encryption method".into()))?;
            let method = u32::from_le_bytes(*method);
            if method != 0 {
                return Err(invalid(format!(
                    "unsupported body encryption method {method} (only 0, chacha20_ietf_poly1305)"
                )));
            }
            let key = <[u8; KEY_LEN]>::try_from(key)
                .map_err(|_| invalid(format!("data key of {} bytes, expected 32", key.len())))?;
            Ok(Packet::DataKey(DataKey::from_bytes(key)))
        }
        PACKET_EDIT_LIST => {
            let (count, lengths) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("edit-list packet without a count".into()))?;
            let count = u32::from_le_bytes(*count) as usize;
            if lengths.len() / 8 < count {
                return Err(invalid(format!(
                    "edit list declares {count} lengths but holds {} bytes",
                    lengths.len()
                )));
            }
            Ok(Packet::EditList(
                lengths
                    .chunks_exact(8)
                    .take(count)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ))
        }
        other => Err(invalid(format!("unsupported packet type {other}"))),
    }
}

/// What a header holds for the keys that opened it.
pub struct OpenedHeader {
    /// The data keys (usually one).
    pub data_keys: Vec<DataKey>,
    /// The edit list, if any: alternating lengths of plaintext to discard and to keep.
    pub edit_list: Option<Vec<u64>>,
}

impl std::fmt::Debug for OpenedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedHeader")
            .field("data_keys", &self.data_keys)
            .field("edit_list", &self.edit_list)
            .finish()
    }
}

fn data_key_packet(key: &DataKey) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(8 + KEY_LEN));
    plain.extend_from_slice(&PACKET_DATA_KEY.to_le_bytes());
    plain.extend_from_slice(&0u32.to_le_bytes());
    plain.extend_from_slice(key.secret_bytes());
    plain
}

fn edit_list_packet(edit_list: &[u64]) -> Result<Vec<u8>> {
    let count = u32::try_from(edit_list.len()).map_err(|_| Error::InvalidArgument {
        reason: "edit list too long".into(),
    })?;
    let mut plain = Vec::with_capacity(8 + 8 * edit_list.len());
    plain.extend_from_slice(&PACKET_EDIT_LIST.to_le_bytes());
    plain.extend_from_slice(&count.to_le_bytes());
    for n in edit_list {
        plain.extend_from_slice(&n.to_le_bytes());
    }
    Ok(plain)
}

/// Removes repeated recipients, keeping the first occurrence's position.
fn unique(recipients: &[PublicKey]) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> = Vec::with_capacity(recipients.len());
    for r in recipients {
        if !out.contains(r) {
            out.push(*r);
        }
    }
    out
}

fn check_size(packets: &[Vec<u8>]) -> Result<()> {
    let len = PREAMBLE_LEN as u64 + packets.iter().map(|p| p.len() as u64 + 4).sum::<u64>();
    if packets.len() > MAX_PACKETS as usize {
        return Err(Error::PacketCount {
            count: u32::try_from(packets.len()).unwrap_or(u32::MAX),
            max: MAX_PACKETS,
        });
    }
    if len > MAX_HEADER_LEN as u64 {
        return Err(Error::HeaderTooLarge {
            len,
            max: MAX_HEADER_LEN,
        });
    }
    Ok(())
}

/// Builds a header holding `data_keys` (and `edit_list`, if any) for every recipient, written by
/// `writer`. Packets are ordered as the reference does: each plaintext packet for every
/// recipient in turn.
pub fn build(
    writer: &SecretKey,
    recipients: &[PublicKey],
    data_keys: &[&DataKey],
    edit_list: Option<&[u64]>,
) -> Result<Vec<u8>> {
    let recipients = unique(recipients);
    if recipients.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "no recipient public key".into(),
        });
    }
    if data_keys.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "no data key".into(),
        });
    }
    let mut plains: Vec<Zeroizing<Vec<u8>>> =
        data_keys.iter().map(|k| data_key_packet(k)).collect();
    if let Some(list) = edit_list {
        plains.push(Zeroizing::new(edit_list_packet(list)?));
    }
    let packets: Vec<Vec<u8>> = plains
        .iter()
        .flat_map(|plain| recipients.iter().map(|r| seal_packet(plain, writer, r)))
        .collect::<Result<_>>()?;
    check_size(&packets)?;
    Ok(serialize(&packets))
}

/// Re-encrypts `header` for `recipients` with a fresh writer key: every packet `key` opens is
/// sealed anew for each recipient; packets it cannot open are kept unchanged unless `trim`.
/// This is the operation a server performs per request for a client's public key.
pub fn reencrypt(
    header: &[u8],
    key: &SecretKey,
    recipients: &[PublicKey],
    trim: bool,
) -> Result<Vec<u8>> {
    reencrypt_with(header, &[key], &SecretKey::generate(), recipients, trim)
}

/// Like [`reencrypt`], with several opening keys and an explicit writer key (the reference CLI
/// writes with the user's own key).
pub fn reencrypt_with(
    header: &[u8],
    keys: &[&SecretKey],
    writer: &SecretKey,
    recipients: &[PublicKey],
    trim: bool,
) -> Result<Vec<u8>> {
    let parsed = EncryptedHeader::parse(header)?;
    let recipients = unique(recipients);
    if recipients.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "no recipient public key".into(),
        });
    }
    let decrypted = parsed.decrypt_packets(keys, None)?;
    let mut opened = 0usize;
    let mut has_data_key = false;
    let mut packets = Vec::new();
    let mut kept = Vec::new();
    for (index, plain) in &decrypted {
        match plain {
            Some(plain) => {
                opened += 1;
                has_data_key |= matches!(classify(*index, plain)?, Packet::DataKey(_));
                for r in &recipients {
                    packets.push(seal_packet(plain, writer, r)?);
                }
            }
            None if !trim => kept.push(parsed.packets[*index].clone()),
            None => {}
        }
    }
    if opened == 0 || !has_data_key {
        return Err(Error::NoMatchingKey);
    }
    packets.extend(kept);
    check_size(&packets)?;
    Ok(serialize(&packets))
}

/// Replaces the edit list with one selecting plaintext `[offset, offset + span)` (or to the end),
/// re-encrypting every data key for `key`'s own public key (the reference `rearrange`). Returns
/// the new header and the range of body segments that must be kept (`end` is `u64::MAX` when
/// the range runs to the end of the file). Files that already hold an edit list are rejected, as the reference does.
pub fn rearrange(
    header: &[u8],
    key: &SecretKey,
    offset: u64,
    span: Option<u64>,
) -> Result<(Vec<u8>, std::ops::Range<u64>)> {
    let parsed = EncryptedHeader::parse(header)?;
    let opened = parsed.open(&[key], None)?;
    if opened.edit_list.is_some() {
        return Err(Error::InvalidArgument {
            reason: "the file already holds an edit list; rearranging it again is not supported"
                .into(),
        });
    }
    if offset == 0 && span.is_none() {
        return Err(Error::InvalidArgument {
            reason: "nothing to rearrange: give a range other than the whole file".into(),
        });
    }
    let seg = crate::body::SEGMENT_SIZE as u64;
    let first = offset / seg;
    let mut edit_list = vec![offset % seg];
    let end = match span {
        Some(span) => {
            edit_list.push(span);
            offset.saturating_add(span).div_ceil(seg)
        }
        None => u64::MAX,
    };
    let keys: Vec<&DataKey> = opened.data_keys.iter().collect();
    let new = build(key, &[key.public_key()], &keys, Some(&edit_list))?;
    Ok((new, first..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_open_and_reencrypt() {
        let alice = SecretKey::generate();
        let bob = SecretKey::generate();
        let carol = SecretKey::generate();
        let dk = DataKey::generate();
        let bytes = build(
            &alice,
            &[bob.public_key(), carol.public_key()],
            &[&dk],
            Some(&[1, 2, 3]),
        )
        .unwrap();
        assert_eq!(bytes.len(), 16 + 2 * 108 + 2 * (76 + 24));
        assert_eq!(
            header_len(&bytes).unwrap(),
            HeaderLen::Complete(bytes.len())
        );
        assert_eq!(
            header_len(&bytes[..20]).unwrap(),
            HeaderLen::NeedMore(16 + 108 + 4)
        );
        let h = EncryptedHeader::parse(&bytes).unwrap();
        let opened = h.open(&[&alice, &carol], None).unwrap();
        assert_eq!(opened.data_keys.len(), 1);
        assert_eq!(opened.data_keys[0].secret_bytes(), dk.secret_bytes());
        assert_eq!(opened.edit_list.as_deref(), Some(&[1u64, 2, 3][..]));
        assert!(matches!(h.open(&[&alice], None), Err(Error::NoMatchingKey)));
        assert!(matches!(
            h.open(&[&bob], Some(&carol.public_key())),
            Err(Error::NoMatchingKey)
        ));

        let dave = SecretKey::generate();
        let re = reencrypt(&bytes, &bob, &[dave.public_key()], true).unwrap();
        assert_eq!(re.len(), 16 + 108 + 100);
        let opened = EncryptedHeader::parse(&re)
            .unwrap()
            .open(&[&dave], None)
            .unwrap();
        assert_eq!(opened.data_keys[0].secret_bytes(), dk.secret_bytes());
        let untrimmed = reencrypt(&bytes, &bob, &[dave.public_key()], false).unwrap();
        assert_eq!(untrimmed.len(), re.len() + 108 + 100);
        assert!(
            EncryptedHeader::parse(&untrimmed)
                .unwrap()
                .open(&[&carol], None)
                .is_ok()
        );
        assert!(matches!(
            reencrypt(&bytes, &dave, &[dave.public_key()], true),
            Err(Error::NoMatchingKey)
        ));
        // A fresh writer key per call: two re-encryptions differ.
        assert_ne!(
            reencrypt(&bytes, &bob, &[dave.public_key()], true).unwrap()[20..52],
            re[20..52]
        );
    }

    #[test]
    fn read_header_reads_exactly_the_header() {
        let sk = SecretKey::generate();
        let dk = DataKey::generate();
        let bytes = build(&sk, &[sk.public_key()], &[&dk], None).unwrap();
        let mut input = bytes.clone();
        input.extend_from_slice(b"body");
        let mut cursor = std::io::Cursor::new(&input);
        assert_eq!(read_header(&mut cursor).unwrap(), bytes);
        assert_eq!(cursor.position() as usize, bytes.len());
        assert!(matches!(
            read_header(&mut &b"not a c4gh"[..]),
            Err(Error::NotCrypt4gh)
        ));
        assert!(matches!(
            read_header(&mut &b"crypt"[..]),
            Err(Error::TruncatedHeader { .. })
        ));
        assert!(matches!(
            read_header(&mut &bytes[..100]),
            Err(Error::TruncatedHeader { .. })
        ));
        assert!(matches!(
            EncryptedHeader::parse(&input),
            Err(Error::TrailingData { extra: 4 })
        ));
    }

    /// The blocking and the async reader agree on every prefix of a four-packet header (a data
    /// key and an edit list for each of two recipients): the whole header and not one body
    /// byte, or the same error.
    #[tokio::test]
    async fn read_header_and_read_header_async_agree_on_every_prefix() {
        let sk = SecretKey::generate();
        let recipients = [sk.public_key(), SecretKey::generate().public_key()];
        let bytes = build(&sk, &recipients, &[&DataKey::generate()], Some(&[1, 2])).unwrap();
        let mut input = bytes.clone();
        input.extend_from_slice(b"body");
        for len in 0..=input.len() {
            let mut sync = std::io::Cursor::new(&input[..len]);
            let mut not_sync = std::io::Cursor::new(&input[..len]);
            let (a, b) = (
                read_header(&mut sync),
                read_header_async(&mut not_sync).await,
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "prefix of {len} bytes");
            match a {
                Ok(header) => {
                    assert_eq!(header, bytes);
                    assert_eq!(sync.position() as usize, bytes.len());
                    assert_eq!(not_sync.position() as usize, bytes.len());
                }
                Err(Error::TruncatedHeader { got, needed }) => {
                    assert!(len < bytes.len(), "prefix of {len} bytes");
                    assert_eq!(got, len);
                    assert!(needed > got && needed <= bytes.len(), "needed {needed}");
                }
                Err(e) => panic!("prefix of {len} bytes: {e:?}"),
            }
        }
    }

    /// Found by the `header` fuzz target: all length fields present, packet bytes missing.
    #[test]
    fn regression_parse_prefix_with_lengths_but_truncated_packets() {
        let mut bytes = b"crypt4gh\x01\x00\x00\x00\x01\x00\x00\x00".to_vec();
        bytes.extend_from_slice(&64u32.to_le_bytes());
        bytes.extend_from_slice(&[0xfa; 20]);
        assert_eq!(header_len(&bytes).unwrap(), HeaderLen::Complete(16 + 64));
        assert!(matches!(
            EncryptedHeader::parse_prefix(&bytes),
            Err(Error::TruncatedHeader {
                got: 40,
                needed: 80
            })
        ));
    }
}
