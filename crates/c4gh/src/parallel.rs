//! Decryption on several cores. Segments are independent, so batches of segments are decrypted
//! by worker threads while the calling thread reads and a writer thread writes in order. Memory
//! is bounded by a fixed pool of batch buffers (`2 × threads + 2` batches of 8 segments, about
//! 0.5 MiB each), whatever the file size.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::body::{
    CIPHER_SEGMENT_SIZE, DataKey, Decryptor, SEGMENT_OVERHEAD, SEGMENT_SIZE, keep_ranges,
};
use crate::crypto::{Aead, NONCE_LEN};
use crate::error::{Error, Result};

/// Segments per batch handed to a worker.
const BATCH_SEGMENTS: usize = 8;

/// A batch of encrypted segments read from the input.
struct Batch {
    seq: u64,
    buf: Vec<u8>,
    len: usize,
    at_eof: bool,
}

/// A decrypted batch: plaintext ranges of each segment within `buf`.
struct Decrypted {
    seq: u64,
    buf: Vec<u8>,
    plain: Vec<Range<usize>>,
}

/// Decrypts a body from `input` (positioned at the first body byte) into `output` using
/// `threads` worker threads (0 = one per available core; 1 = the single-threaded
/// [`Decryptor`]). Applies the edit list. Returns the plaintext bytes written.
pub fn decrypt_parallel<R: Read, W: Write + Send>(
    input: &mut R,
    output: &mut W,
    keys: &[DataKey],
    edit_list: Option<&[u64]>,
    threads: usize,
) -> Result<u64> {
    let threads = match threads {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if threads == 1 {
        return Decryptor::new(input, keys, edit_list)?.copy_to(output);
    }
    if keys.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "no data key to decrypt with".into(),
        });
    }
    let aeads: Vec<Aead> = keys.iter().map(|k| Aead::new(k.secret_bytes())).collect();
    let buffers = 2 * threads + 2;
    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        pool_tx
            .send(vec![0u8; BATCH_SEGMENTS * CIPHER_SEGMENT_SIZE])
            .map_err(|_| Error::Io(io::Error::other("buffer pool closed")))?;
    }
    let (work_tx, work_rx) = sync_channel::<Batch>(buffers);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Result<Decrypted>>(buffers);
    let ranges = keep_ranges(edit_list);

    thread::scope(|scope| {
        for _ in 0..threads {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            let aeads = &aeads;
            scope.spawn(move || worker(&work_rx, &done_tx, aeads));
        }
        drop(done_tx);
        let writer = scope.spawn(move || write_in_order(done_rx, pool_tx, output, ranges));
        let read_result = read_batches(input, &pool_rx, &work_tx);
        drop(work_tx);
        drop(pool_rx);
        let written = match writer.join() {
            Ok(result) => result,
            Err(_) => Err(Error::Io(io::Error::other(
                "decryption writer thread panicked",
            ))),
        };
        // A decryption or write error explains a stalled read better than the read error.
        let written = written?;
        read_result?;
        Ok(written)
    })
}

fn read_batches<R: Read>(
    input: &mut R,
    pool: &Receiver<Vec<u8>>,
    work: &SyncSender<Batch>,
) -> Result<()> {
    let mut seq = 0u64;
    loop {
        let Ok(mut buf) = pool.recv() else {
            return Ok(()); // the writer stopped (done or failed); it reports why
        };
        let mut len = 0;
        while len < buf.len() {
            match input.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        let at_eof = len < buf.len();
        if len == 0 {
            return Ok(());
        }
        if work
            .send(Batch {
                seq,
                buf,
                len,
                at_eof,
            })
            .is_err()
            || at_eof
        {
            return Ok(());
        }
        seq += 1;
    }
}

fn worker(work: &Mutex<Receiver<Batch>>, done: &SyncSender<Result<Decrypted>>, aeads: &[Aead]) {
    let mut spare = Vec::new();
    loop {
        let batch = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(batch) = batch else { return };
        let result = decrypt_batch(batch, aeads, &mut spare);
        if done.send(result).is_err() {
            return;
        }
    }
}

fn decrypt_batch(mut batch: Batch, aeads: &[Aead], spare: &mut Vec<u8>) -> Result<Decrypted> {
    let mut plain = Vec::with_capacity(BATCH_SEGMENTS);
    let first_segment = batch.seq * BATCH_SEGMENTS as u64;
    for (j, start) in (0..batch.len).step_by(CIPHER_SEGMENT_SIZE).enumerate() {
        let end = (start + CIPHER_SEGMENT_SIZE).min(batch.len);
        let segment = first_segment + j as u64;
        let len = end - start;
        if len < SEGMENT_OVERHEAD {
            return Err(Error::TruncatedBody { segment, len });
        }
        let sealed = &mut batch.buf[start..end];
        if aeads.len() > 1 {
            spare.clear();
            spare.extend_from_slice(sealed);
        }
        let mut opened = None;
        for (i, aead) in aeads.iter().enumerate() {
            if i > 0 {
                sealed.copy_from_slice(spare);
            }
            if let Some(p) = aead.open(sealed) {
                opened = Some(p.len());
                break;
            }
        }
        let Some(plain_len) = opened else {
            return Err(Error::SegmentAuthentication {
                segment,
                len,
                is_last: batch.at_eof && end == batch.len,
            });
        };
        plain.push(start + NONCE_LEN..start + NONCE_LEN + plain_len);
    }
    Ok(Decrypted {
        seq: batch.seq,
        buf: batch.buf,
        plain,
    })
}

fn write_in_order<W: Write>(
    done: Receiver<Result<Decrypted>>,
    pool: SyncSender<Vec<u8>>,
    output: &mut W,
    ranges: Vec<Range<u64>>,
) -> Result<u64> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut written = 0u64;
    let mut range_idx = 0usize;
    for result in done {
        let batch = result?;
        waiting.insert(batch.seq, batch);
        while let Some(batch) = waiting.remove(&next) {
            let first_segment = next * BATCH_SEGMENTS as u64;
            for (j, plain) in batch.plain.iter().enumerate() {
                let seg_start = (first_segment + j as u64) * SEGMENT_SIZE as u64;
                let seg_end = seg_start + plain.len() as u64;
                while let Some(r) = ranges.get(range_idx) {
                    if r.end <= seg_start {
                        range_idx += 1;
                        continue;
                    }
                    if r.start >= seg_end {
                        break;
                    }
                    let from = r.start.max(seg_start) - seg_start;
                    let to = r.end.min(seg_end) - seg_start;
                    output.write_all(
                        &batch.buf[plain.start + from as usize..plain.start + to as usize],
                    )?;
                    written += to - from;
                    if r.end > seg_end {
                        break;
                    }
                    range_idx += 1;
                }
            }
            if range_idx >= ranges.len() {
                output.flush()?;
                return Ok(written);
            }
            // The reader may have stopped already; a closed pool is not an error here.
            let _ = pool.send(batch.buf);
            next += 1;
        }
    }
    output.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Encryptor;

    #[test]
    fn parallel_matches_sequential_with_and_without_edit_lists() {
        let key = DataKey::generate();
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = Encryptor::new(Vec::new(), &key);
        enc.write_all(&plain).unwrap();
        let body = enc.finish().unwrap();
        for edit in [
            None,
            Some(&[5u64, 10, 1_000_000, 70_000][..]),
            Some(&[65_536u64][..]),
        ] {
            for threads in [2, 3] {
                let mut out = Vec::new();
                let keys = [DataKey::from_bytes(*key.secret_bytes())];
                decrypt_parallel(&mut &body[..], &mut out, &keys, edit, threads).unwrap();
                let mut want = Vec::new();
                Decryptor::new(&body[..], &keys, edit)
                    .unwrap()
                    .copy_to(&mut want)
                    .unwrap();
                assert_eq!(out.len(), want.len(), "{edit:?}");
                assert!(out == want, "{edit:?} threads {threads}");
            }
        }
        let mut bad = body.clone();
        bad[20 * CIPHER_SEGMENT_SIZE + 3] ^= 0x80;
        let keys = [DataKey::from_bytes(*key.secret_bytes())];
        match decrypt_parallel(&mut &bad[..], &mut Vec::new(), &keys, None, 2) {
            Err(Error::SegmentAuthentication { segment: 20, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
