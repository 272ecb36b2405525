//! Encryption and decryption on several cores. Segments are independent, so batches of segments
//! are sealed or opened by worker threads while the calling thread reads and a writer thread
//! writes in order. Memory is bounded by a fixed pool of batch buffers (`2 × threads + 2`
//! batches of 8 segments, about 0.5 MiB each), whatever the file size.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::body::{
    CIPHER_SEGMENT_SIZE, DataKey, Decryptor, Encryptor, SEGMENT_OVERHEAD, SEGMENT_SIZE, keep_ranges,
};
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// Segments per batch handed to a worker.
const BATCH_SEGMENTS: usize = 8;
/// Bytes of one batch buffer.
const BATCH_LEN: usize = BATCH_SEGMENTS * CIPHER_SEGMENT_SIZE;

fn thread_count(threads: usize) -> usize {
    match threads {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
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
    let threads = thread_count(threads);
    if threads == 1 {
        return Decryptor::new(input, keys, edit_list)?.copy_to(output);
    }
    if keys.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "no data key to decrypt with".into(),
        });
    }
    let aeads: Vec<Aead> = keys.iter().map(|k| Aead::new(k.secret_bytes())).collect();
    let ranges = keep_ranges(edit_list);
    let mut range_idx = 0usize;
    let mut written = 0u64;
    let read = |buf: &mut [u8]| -> Result<Option<(usize, bool)>> {
        let len = read_full(input, buf)?;
        Ok((len > 0).then_some((len, len < buf.len())))
    };
    if ranges.is_empty() {
        return Ok(0);
    }
    let work = |seq: u64, buf: &mut [u8], &(len, at_eof): &(usize, bool)| {
        open_batch(seq, &mut buf[..len], at_eof, &aeads, &ranges)
    };

    let write = |seq: u64, buf: &[u8], plain: Vec<Range<usize>>| -> Result<bool> {
        let first_segment = seq * BATCH_SEGMENTS as u64;
        for (j, plain) in plain.iter().enumerate() {
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
                let from = (r.start.max(seg_start) - seg_start) as usize;
                let to = (r.end.min(seg_end) - seg_start) as usize;
                output.write_all(&buf[plain.start + from..plain.start + to])?;
                written += (to - from) as u64;
                if r.end > seg_end {
                    break;
                }
                range_idx += 1;
            }
        }
        Ok(range_idx < ranges.len())
    };
    run_pipeline(threads, read, work, write)?;
    output.flush()?;
    Ok(written)
}

/// Encrypts `input` to its end into a body sealed with `key`, written to `output`, using
/// `threads` worker threads (0 = one per available core; 1 = the single-threaded
/// [`Encryptor`]). Returns the plaintext bytes read.
pub fn encrypt_parallel<R: Read, W: Write + Send>(
    input: &mut R,
    output: &mut W,
    key: &DataKey,
    threads: usize,
) -> Result<u64> {
    let threads = thread_count(threads);
    if threads == 1 {
        let mut enc = Encryptor::new(output, key);
        let n = enc.copy_from(input)?;
        enc.finish()?;
        return Ok(n);
    }
    let aead = Aead::new(key.secret_bytes());
    let mut total = 0u64;
    let mut done = false;
    // Plaintext of segment j goes to its place in the sealed layout: j·65564 + 12.
    let read = |buf: &mut [u8]| -> Result<Option<Vec<usize>>> {
        if done {
            return Ok(None);
        }
        let mut lens = Vec::with_capacity(BATCH_SEGMENTS);
        for j in 0..BATCH_SEGMENTS {
            let start = j * CIPHER_SEGMENT_SIZE + NONCE_LEN;
            let len = read_full(input, &mut buf[start..start + SEGMENT_SIZE])?;
            total += len as u64;
            if len > 0 {
                lens.push(len);
            }
            if len < SEGMENT_SIZE {
                done = true;
                break;
            }
        }
        Ok((!lens.is_empty()).then_some(lens))
    };
    let work = |_seq: u64, buf: &mut [u8], lens: &Vec<usize>| -> Result<Vec<usize>> {
        for (j, &len) in lens.iter().enumerate() {
            let start = j * CIPHER_SEGMENT_SIZE;
            let mut nonce = [0u8; NONCE_LEN];
            crypto::fill_random(&mut nonce);
            buf[start..start + NONCE_LEN].copy_from_slice(&nonce);
            let end = start + NONCE_LEN + len;
            let tag = aead.seal(nonce, &mut buf[start + NONCE_LEN..end]);
            buf[end..end + TAG_LEN].copy_from_slice(&tag);
        }
        Ok(lens.clone())
    };
    let write = |_seq: u64, buf: &[u8], lens: Vec<usize>| -> Result<bool> {
        let sealed: usize = lens.iter().map(|l| l + SEGMENT_OVERHEAD).sum();
        output.write_all(&buf[..sealed])?;
        Ok(true)
    };
    run_pipeline(threads, read, work, write)?;
    output.flush()?;
    Ok(total)
}

fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(len)
}

/// Opens the segments of one batch in place; returns each segment's plaintext range.
/// Segments no kept range touches are not opened (as the sequential decryptor skips them).
fn open_batch(
    seq: u64,
    buf: &mut [u8],
    at_eof: bool,
    aeads: &[Aead],
    ranges: &[Range<u64>],
) -> Result<Vec<Range<usize>>> {
    let mut plain = Vec::with_capacity(BATCH_SEGMENTS);
    let mut spare = Vec::new();
    let first_segment = seq * BATCH_SEGMENTS as u64;
    let total = buf.len();
    for (j, start) in (0..total).step_by(CIPHER_SEGMENT_SIZE).enumerate() {
        let end = (start + CIPHER_SEGMENT_SIZE).min(total);
        let segment = first_segment + j as u64;
        let len = end - start;
        let seg_start = segment * SEGMENT_SIZE as u64;
        let first = ranges.partition_point(|r| r.end <= seg_start);
        if ranges
            .get(first)
            .is_none_or(|r| r.start >= seg_start + SEGMENT_SIZE as u64)
        {
            plain.push(start..start);
            continue;
        }
        if len < SEGMENT_OVERHEAD {
            return Err(Error::TruncatedBody { segment, len });
        }
        let sealed = &mut buf[start..end];
        if aeads.len() > 1 {
            spare.clear();
            spare.extend_from_slice(sealed);
        }
        let mut opened = None;
        for (i, aead) in aeads.iter().enumerate() {
            if i > 0 {
                sealed.copy_from_slice(&spare);
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
                is_last: at_eof && end == total,
            });
        };
        plain.push(start + NONCE_LEN..start + NONCE_LEN + plain_len);
    }
    Ok(plain)
}

/// A batch travelling through the pipeline.
struct Job<M> {
    seq: u64,
    buf: Vec<u8>,
    meta: M,
}

/// Runs `read` on the calling thread, `work` on `threads` workers and `write` on a writer
/// thread, in batch order, with a fixed pool of buffers. `read` returns `None` at the end;
/// `write` returns `false` to stop early. The first error wins; a work or write error is
/// reported in preference to the read error it causes.
fn run_pipeline<M, O, Rd, Wk, Wr>(
    threads: usize,
    mut read: Rd,
    work: Wk,
    mut write: Wr,
) -> Result<()>
where
    M: Send,
    O: Send,
    Rd: FnMut(&mut [u8]) -> Result<Option<M>>,
    Wk: Fn(u64, &mut [u8], &M) -> Result<O> + Sync,
    Wr: FnMut(u64, &[u8], O) -> Result<bool> + Send,
{
    let buffers = 2 * threads + 2;
    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        pool_tx
            .send(vec![0u8; BATCH_LEN])
            .map_err(|_| Error::Io(io::Error::other("buffer pool closed")))?;
    }
    let (work_tx, work_rx) = sync_channel::<Job<M>>(buffers);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<(Job<()>, Result<O>)>(buffers);

    thread::scope(|scope| {
        let work = &work;
        for _ in 0..threads {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || worker(&work_rx, &done_tx, work));
        }
        drop(done_tx);
        let writer = scope.spawn(move || -> Result<()> {
            // Results are handled in batch order, errors included: an error in a batch after
            // the point where `write` stops is not reported.
            let mut waiting = BTreeMap::new();
            let mut next = 0u64;
            for (job, result) in done_rx {
                waiting.insert(job.seq, (job.buf, result));
                while let Some((buf, result)) = waiting.remove(&next) {
                    if !write(next, &buf, result?)? {
                        return Ok(());
                    }
                    // The reader may have stopped already; a closed pool is not an error.
                    let _ = pool_tx.send(buf);
                    next += 1;
                }
            }
            Ok(())
        });
        let read_result = (|| -> Result<()> {
            let mut seq = 0u64;
            // Without a free buffer the writer has stopped (done or failed); it reports why.
            while let Ok(mut buf) = pool_rx.recv() {
                let Some(meta) = read(&mut buf)? else {
                    return Ok(());
                };
                if work_tx.send(Job { seq, buf, meta }).is_err() {
                    return Ok(());
                }
                seq += 1;
            }
            Ok(())
        })();
        drop(work_tx);
        drop(pool_rx);
        match writer.join() {
            Ok(result) => result?,
            Err(_) => return Err(Error::Io(io::Error::other("writer thread panicked"))),
        }
        read_result
    })
}

fn worker<M, O, Wk>(
    jobs: &Mutex<Receiver<Job<M>>>,
    done: &SyncSender<(Job<()>, Result<O>)>,
    work: &Wk,
) where
    Wk: Fn(u64, &mut [u8], &M) -> Result<O>,
{
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let result = work(job.seq, &mut job.buf, &job.meta);
        let done_job = Job {
            seq: job.seq,
            buf: job.buf,
            meta: (),
        };
        if done.send((done_job, result)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_matches_sequential_with_and_without_edit_lists() {
        let key = DataKey::generate();
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = Vec::new();
        encrypt_parallel(&mut &plain[..], &mut body, &key, 2).unwrap();
        assert_eq!(
            body.len() as u64,
            crate::body::encrypted_len(plain.len() as u64)
        );
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

    /// Found by the `decrypt` fuzz target: the parallel path must not fail on bytes the edit
    /// list never needs, exactly like the sequential decryptor.
    #[test]
    fn regression_segments_outside_the_edit_list_are_not_checked() {
        let key = DataKey::generate();
        let plain: Vec<u8> = (0..600_000u32).map(|i| i as u8).collect();
        let mut body = Vec::new();
        encrypt_parallel(&mut &plain[..], &mut body, &key, 2).unwrap();
        body[3 * CIPHER_SEGMENT_SIZE + 9] ^= 1; // segment 3: outside the kept ranges below
        body.truncate(body.len() - 3); // and a damaged end
        let keys = [DataKey::from_bytes(*key.secret_bytes())];
        for edit in [&[][..], &[10, 20][..], &[10, 20, 300_000, 5][..]] {
            let mut seq = Vec::new();
            Decryptor::new(&body[..], &keys, Some(edit))
                .unwrap()
                .copy_to(&mut seq)
                .unwrap();
            let mut par = Vec::new();
            decrypt_parallel(&mut &body[..], &mut par, &keys, Some(edit), 2).unwrap();
            assert_eq!(seq, par, "{edit:?}");
        }
        assert!(decrypt_parallel(&mut &[0xd6u8][..], &mut Vec::new(), &keys, Some(&[]), 2).is_ok());
    }

    #[test]
    fn parallel_encryption_at_segment_and_batch_edges() {
        for len in [
            0,
            1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            BATCH_SEGMENTS * SEGMENT_SIZE,
            BATCH_SEGMENTS * SEGMENT_SIZE + 7,
        ] {
            let key = DataKey::generate();
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut body = Vec::new();
            assert_eq!(
                encrypt_parallel(&mut &plain[..], &mut body, &key, 2).unwrap(),
                len as u64
            );
            assert_eq!(
                body.len() as u64,
                crate::body::encrypted_len(len as u64),
                "len {len}"
            );
            let mut out = Vec::new();
            Decryptor::new(&body[..], &[key], None)
                .unwrap()
                .copy_to(&mut out)
                .unwrap();
            assert!(out == plain, "len {len}");
        }
    }
}
