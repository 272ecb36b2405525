//! Encryption and decryption on several cores. Segments are independent, so the input is cut
//! into batches of segments and `threads` lanes (the calling thread and `threads − 1` more)
//! each read a batch, seal or open it in place, and hand it to a bounded reorder window; the
//! lane that completes the batch next in order writes it and every batch queued behind it.
//! No thread only waits on I/O, so `threads` equals the number of busy threads. Each lane has
//! its own cipher contexts (nothing but the reorder window is shared). Memory is
//! bounded by a pool of at most `2 × threads` batch buffers (16 segments, about 1 MiB each),
//! allocated on first use, whatever the file size; no data buffer is allocated per segment or
//! per batch. A body of one batch is handled on the calling thread alone.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use zeroize::Zeroize;

use crate::body::{
    CIPHER_SEGMENT_SIZE, DataKey, Decryptor, Encryptor, SEGMENT_OVERHEAD, SEGMENT_SIZE, keep_ranges,
};
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// Segments per batch handed to a worker.
const BATCH_SEGMENTS: usize = 16;
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
pub fn decrypt_parallel<R: Read + Send, W: Write + Send>(
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
    let ranges = keep_ranges(edit_list);
    let mut range_idx = 0usize;
    let mut written = 0u64;
    let read = |buf: &mut [u8]| -> Result<Option<Batch<(usize, bool)>>> {
        let len = read_full(input, buf)?;
        let at_eof = len < buf.len();
        Ok((len > 0).then_some(Batch {
            meta: (len, at_eof),
            filled: len,
            last: at_eof,
        }))
    };
    if ranges.is_empty() {
        return Ok(0);
    }
    let worker = || {
        let mut aeads: Vec<Aead> = keys.iter().map(|k| Aead::new(k.secret_bytes())).collect();
        let ranges = &ranges;
        move |seq: u64, buf: &mut [u8], &(len, at_eof): &(usize, bool)| {
            open_batch(seq, &mut buf[..len], at_eof, &mut aeads, ranges)
        }
    };

    let write = |seq: u64, buf: &[u8], (plain, failed): Opened| -> Result<bool> {
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
        // Like the sequential decryptor: the segments before a failed one are written first.
        match failed {
            Some(e) => Err(e),
            None => Ok(range_idx < ranges.len()),
        }
    };
    run_pipeline(threads, read, worker, write)?;
    output.flush()?;
    Ok(written)
}

/// Encrypts `input` to its end into a body sealed with `key`, written to `output`, using
/// `threads` worker threads (0 = one per available core; 1 = the single-threaded
/// [`Encryptor`]). Returns the plaintext bytes read.
pub fn encrypt_parallel<R: Read + Send, W: Write + Send>(
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
    let mut total = 0u64;
    let mut done = false;
    // Plaintext of segment j goes to its place in the sealed layout: j·65564 + 12.
    let read = |buf: &mut [u8]| -> Result<Option<Batch<Vec<usize>>>> {
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
        // Sealing writes at most up to the end of the last segment read.
        let filled = lens.len() * CIPHER_SEGMENT_SIZE;
        Ok((!lens.is_empty()).then_some(Batch {
            meta: lens,
            filled,
            last: done,
        }))
    };
    let worker = || {
        let mut aead = Aead::new(key.secret_bytes());
        move |_seq: u64, buf: &mut [u8], lens: &Vec<usize>| -> Result<Vec<usize>> {
            for (j, &len) in lens.iter().enumerate() {
                let start = j * CIPHER_SEGMENT_SIZE;
                let mut nonce = [0u8; NONCE_LEN];
                crypto::fill_random(&mut nonce);
                buf[start..start + NONCE_LEN].copy_from_slice(&nonce);
                let end = start + NONCE_LEN + len;
                let tag = aead.seal(nonce, &mut buf[start + NONCE_LEN..end])?;
                buf[end..end + TAG_LEN].copy_from_slice(&tag);
            }
            Ok(lens.clone())
        }
    };
    let write = |_seq: u64, buf: &[u8], lens: Vec<usize>| -> Result<bool> {
        let sealed: usize = lens.iter().map(|l| l + SEGMENT_OVERHEAD).sum();
        output.write_all(&buf[..sealed])?;
        Ok(true)
    };
    run_pipeline(threads, read, worker, write)?;
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

/// The plaintext range of each opened segment of a batch, and the error that stopped it early.
type Opened = (Vec<Range<usize>>, Option<Error>);

/// Opens the segments of one batch in place; returns each segment's plaintext range up to the
/// first segment that fails, and that failure (an error of the cipher library itself fails
/// the whole batch). Segments no kept range touches are not opened
/// (as the sequential decryptor skips them).
fn open_batch(
    seq: u64,
    buf: &mut [u8],
    at_eof: bool,
    aeads: &mut [Aead],
    ranges: &[Range<u64>],
) -> Result<Opened> {
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
            return Ok((plain, Some(Error::TruncatedBody { segment, len })));
        }
        let sealed = &mut buf[start..end];
        if aeads.len() > 1 {
            spare.clear();
            spare.extend_from_slice(sealed);
        }
        let mut opened = None;
        for (i, aead) in aeads.iter_mut().enumerate() {
            if i > 0 {
                sealed.copy_from_slice(&spare);
            }
            if let Some(p) = aead.open(sealed)? {
                opened = Some(p.len());
                break;
            }
        }
        let Some(plain_len) = opened else {
            let failed = Error::SegmentAuthentication {
                segment,
                len,
                is_last: at_eof && end == total,
            };
            return Ok((plain, Some(failed)));
        };
        plain.push(start + NONCE_LEN..start + NONCE_LEN + plain_len);
    }
    Ok((plain, None))
}

/// Locks `m`, ignoring poisoning: a lane that panicked is reported by `thread::scope`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What `read` reports about the batch it read.
struct Batch<M> {
    /// Passed to `work` with the buffer.
    meta: M,
    /// Bytes of the buffer written by `read` and `work` together, from its start.
    filled: usize,
    /// The input is known to end with this batch.
    last: bool,
}

/// A batch buffer. The bytes ever filled held plaintext and are zeroized on drop (only those:
/// a short input does not pay for clearing a whole batch).
struct Buffer {
    bytes: Vec<u8>,
    dirty: usize,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(dirty) = self.bytes.get_mut(..self.dirty) {
            dirty.zeroize();
        }
    }
}

/// The reading end, shared by every lane: whoever holds it reads the next batch.
struct Input<Rd> {
    read: Rd,
    next_seq: u64,
    error: Option<Error>,
}

/// The reorder window: batches finished out of order wait here for their turn to be written.
struct Window<O> {
    ready: BTreeMap<u64, (Buffer, Result<O>)>,
    free: Vec<Buffer>,
    /// Buffers allocated so far; at most [`Pipeline::max_buffers`].
    allocated: usize,
    next_write: u64,
    /// A lane is writing; it writes every batch that becomes ready in order before it stops.
    writing: bool,
    /// The writer stopped early (`write` returned `false`) or failed.
    stopped: bool,
    error: Option<Error>,
}

/// State shared by the lanes of one [`run_pipeline`] call.
struct Pipeline<Rd, Wr, O> {
    input: Mutex<Input<Rd>>,
    window: Mutex<Window<O>>,
    /// Signalled when a buffer returns to the pool or the pipeline stops.
    freed: Condvar,
    write: Mutex<Wr>,
    /// The input has ended (or failed), or the writer stopped: no lane reads again.
    input_done: AtomicBool,
    max_buffers: usize,
}

impl<M, O, Rd, Wr> Pipeline<Rd, Wr, O>
where
    Rd: FnMut(&mut [u8]) -> Result<Option<Batch<M>>>,
    Wr: FnMut(u64, &[u8], O) -> Result<bool>,
{
    /// A free buffer, allocated on first need, waiting while the window is full; `None` when
    /// there is nothing more to read.
    fn buffer(&self) -> Option<Buffer> {
        let mut window = lock(&self.window);
        loop {
            if window.stopped || self.input_done.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(buf) = window.free.pop() {
                return Some(buf);
            }
            if window.allocated < self.max_buffers {
                window.allocated += 1;
                return Some(Buffer {
                    bytes: vec![0u8; BATCH_LEN],
                    dirty: 0,
                });
            }
            window = self
                .freed
                .wait(window)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Reads the next batch into `buf`; `None` when the input has ended or failed, or the
    /// pipeline stopped.
    fn read(&self, buf: &mut Buffer) -> Option<(u64, M)> {
        let mut input = lock(&self.input);
        if self.input_done.load(Ordering::Relaxed) {
            return None;
        }
        let (batch, last) = match (input.read)(&mut buf.bytes) {
            Ok(Some(batch)) => {
                buf.dirty = buf.dirty.max(batch.filled.min(buf.bytes.len()));
                (Some(batch.meta), batch.last)
            }
            Ok(None) => (None, true),
            Err(e) => {
                input.error = Some(e);
                (None, true)
            }
        };
        if last {
            self.end_input();
        }
        let seq = input.next_seq;
        input.next_seq += 1;
        batch.map(|meta| (seq, meta))
    }

    /// No lane reads again; lanes waiting for a buffer give up.
    fn end_input(&self) {
        self.input_done.store(true, Ordering::Relaxed);
        let _window = lock(&self.window);
        self.freed.notify_all();
    }

    /// Hands in batch `seq`. If no lane is writing, this lane writes every batch that is ready
    /// in order, returning their buffers to the pool.
    fn finish(&self, seq: u64, buf: Buffer, result: Result<O>) {
        let mut window = lock(&self.window);
        if window.stopped {
            return;
        }
        window.ready.insert(seq, (buf, result));
        if window.writing {
            return;
        }
        window.writing = true;
        loop {
            let next = window.next_write;
            let Some((buf, result)) = window.ready.remove(&next) else {
                break;
            };
            drop(window);
            // Only the lane holding `writing` gets here, so this lock is never contended.
            let step = result.and_then(|out| (lock(&self.write))(next, &buf.bytes, out));
            window = lock(&self.window);
            window.free.push(buf);
            window.next_write += 1;
            // Every waiter rechecks: a buffer taken by a lane that did not wait must not leave
            // a waiter asleep next to a free buffer.
            self.freed.notify_all();
            match step {
                Ok(true) => {}
                Ok(false) => window.stopped = true,
                Err(e) => {
                    window.stopped = true;
                    window.error = Some(e);
                }
            }
            if window.stopped {
                self.input_done.store(true, Ordering::Relaxed);
                return;
            }
        }
        window.writing = false;
    }

    /// One lane: read, work and hand in batches until there are none left, with its own
    /// `work` (so cipher contexts are per lane, never shared). Starts with `first`, a batch
    /// this lane has already read.
    fn lane<Wk>(&self, mut work: Wk, mut first: Option<(Buffer, u64, M)>)
    where
        Wk: FnMut(u64, &mut [u8], &M) -> Result<O>,
    {
        loop {
            let (mut buf, seq, meta) = match first.take() {
                Some(batch) => batch,
                None => {
                    let Some(mut buf) = self.buffer() else { return };
                    let Some((seq, meta)) = self.read(&mut buf) else {
                        lock(&self.window).free.push(buf);
                        return;
                    };
                    (buf, seq, meta)
                }
            };
            let result = work(seq, &mut buf.bytes, &meta);
            self.finish(seq, buf, result);
        }
    }
}

/// Runs the pipeline on up to `threads` lanes (the calling thread and `threads − 1` more,
/// started only when the input holds more than one batch). Each lane reads the next batch
/// (`read`, under a lock, so batches are numbered in input order), processes it with its own
/// worker (`worker()` makes one per lane) without any lock, and hands it to the reorder window; whichever lane completes the batch
/// that is next in order writes it (`write`) and every batch queued behind it. So every thread
/// is busy reading, working or writing, and memory is bounded by `2 × threads` batch buffers,
/// allocated on first use. `read` returns `None` at the end, or a [`Batch`]; `write` returns `false` to stop early. Batches are
/// written in order, errors included: a work or write error is reported in preference to the
/// read error that follows it, and an error in a batch after the point where `write` stops is
/// not reported.
fn run_pipeline<M, O, Rd, Mk, Wk, Wr>(threads: usize, read: Rd, worker: Mk, write: Wr) -> Result<()>
where
    M: Send,
    O: Send,
    Rd: FnMut(&mut [u8]) -> Result<Option<Batch<M>>> + Send,
    Mk: Fn() -> Wk + Sync,
    Wk: FnMut(u64, &mut [u8], &M) -> Result<O>,
    Wr: FnMut(u64, &[u8], O) -> Result<bool> + Send,
{
    let lanes = threads.max(1);
    let pipeline = Pipeline {
        input: Mutex::new(Input {
            read,
            next_seq: 0,
            error: None,
        }),
        window: Mutex::new(Window {
            ready: BTreeMap::new(),
            free: Vec::new(),
            allocated: 0,
            next_write: 0,
            writing: false,
            stopped: false,
            error: None,
        }),
        freed: Condvar::new(),
        write: Mutex::new(write),
        input_done: AtomicBool::new(false),
        max_buffers: 2 * lanes,
    };
    // The first batch is read before any thread starts: a short input needs none.
    let first = pipeline.buffer().and_then(|mut buf| {
        let (seq, meta) = pipeline.read(&mut buf)?;
        Some((buf, seq, meta))
    });
    if first.is_some() {
        thread::scope(|scope| {
            let (pipeline, worker) = (&pipeline, &worker);
            if !pipeline.input_done.load(Ordering::Relaxed) {
                for _ in 1..lanes {
                    scope.spawn(move || pipeline.lane(worker(), None));
                }
            }
            pipeline.lane(worker(), first);
        });
    }
    let window = pipeline
        .window
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = window.error {
        return Err(e);
    }
    if window.stopped {
        return Ok(());
    }
    let input = pipeline
        .input
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    match input.error {
        Some(e) => Err(e),
        None => Ok(()),
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

    /// A pseudo-random delay per batch, so lanes finish batches out of order.
    fn jitter(seq: u64, salt: u64) {
        let h = (seq ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        thread::sleep(std::time::Duration::from_micros(h * 40));
    }

    /// Runs the pipeline over `batches` numbered batches; `fail_read_at`, `fail_work_at`,
    /// `fail_write_at` and `stop_at` inject each outcome at that batch. Returns the result and
    /// the batch numbers written, in order.
    fn run_numbered(
        threads: usize,
        batches: u64,
        salt: u64,
        fail_read_at: Option<u64>,
        fail_work_at: Option<u64>,
        fail_write_at: Option<u64>,
        stop_at: Option<u64>,
    ) -> (Result<()>, Vec<u64>) {
        let mut next = 0u64;
        let read = |buf: &mut [u8]| -> Result<Option<Batch<u64>>> {
            if Some(next) == fail_read_at {
                return Err(Error::Io(io::Error::other("read failed")));
            }
            // Half the runs learn of the end only from an empty read.
            if next == batches {
                return Ok(None);
            }
            buf[..8].copy_from_slice(&next.to_le_bytes());
            next += 1;
            Ok(Some(Batch {
                meta: next - 1,
                filled: 9,
                last: salt % 2 == 1 && next == batches,
            }))
        };
        let work = |seq: u64, buf: &mut [u8], &meta: &u64| -> Result<u64> {
            assert_eq!(seq, meta, "batches are numbered in read order");
            jitter(seq, salt);
            if Some(seq) == fail_work_at {
                return Err(Error::TruncatedBody {
                    segment: seq,
                    len: 0,
                });
            }
            buf[8] = 0xAB;
            Ok(seq * 3)
        };
        let mut written = Vec::new();
        let mut buffers = std::collections::BTreeSet::new();
        let write = |seq: u64, buf: &[u8], out: u64| -> Result<bool> {
            buffers.insert(buf.as_ptr() as usize);
            assert!(
                buffers.len() <= 2 * threads.max(1),
                "the pool is bounded by two buffers per lane"
            );
            assert_eq!(out, seq * 3);
            assert_eq!(
                buf[..8],
                seq.to_le_bytes(),
                "the buffer travels with its batch"
            );
            assert_eq!(buf[8], 0xAB);
            if Some(seq) == fail_write_at {
                return Err(Error::Io(io::Error::other("write failed")));
            }
            written.push(seq);
            Ok(Some(seq) != stop_at)
        };
        let result = run_pipeline(threads, read, || &work, write);
        (result, written)
    }

    #[test]
    fn reorder_window_writes_batches_in_order_whatever_order_they_finish_in() {
        for threads in [1, 2, 3, 5] {
            for salt in [0, 7, 0xDEAD] {
                for batches in [0, 1, 2, 17, 60] {
                    let (result, written) =
                        run_numbered(threads, batches, salt, None, None, None, None);
                    assert!(result.is_ok(), "{result:?}");
                    assert_eq!(
                        written,
                        (0..batches).collect::<Vec<_>>(),
                        "threads {threads}"
                    );
                }
            }
        }
    }

    #[test]
    fn reorder_window_reports_the_first_error_in_batch_order() {
        for threads in [2, 3] {
            // A work error stops the output right before its batch.
            let (result, written) = run_numbered(threads, 40, 3, None, Some(11), None, None);
            assert!(matches!(
                result,
                Err(Error::TruncatedBody { segment: 11, .. })
            ));
            assert_eq!(written, (0..11).collect::<Vec<_>>());
            // A read error comes after every batch read before it.
            let (result, written) = run_numbered(threads, 40, 5, Some(23), None, None, None);
            assert!(matches!(result, Err(Error::Io(ref e)) if e.to_string() == "read failed"));
            assert_eq!(written, (0..23).collect::<Vec<_>>());
            // ... but a work error before it wins.
            let (result, _) = run_numbered(threads, 40, 5, Some(23), Some(4), None, None);
            assert!(matches!(
                result,
                Err(Error::TruncatedBody { segment: 4, .. })
            ));
            // A write error.
            let (result, written) = run_numbered(threads, 40, 9, None, None, Some(30), None);
            assert!(matches!(result, Err(Error::Io(ref e)) if e.to_string() == "write failed"));
            assert_eq!(written, (0..30).collect::<Vec<_>>());
            // `write` asking to stop ends the run without an error, even with a later failure.
            let (result, written) = run_numbered(threads, 40, 1, None, Some(35), None, Some(12));
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(written, (0..=12).collect::<Vec<_>>());
        }
    }

    #[test]
    fn parallel_decryption_of_empty_and_truncated_bodies_matches_sequential() {
        let key = DataKey::generate();
        let keys = || [DataKey::from_bytes(*key.secret_bytes())];
        let plain: Vec<u8> = (0..(BATCH_SEGMENTS * 2 + 1) * SEGMENT_SIZE + 100)
            .map(|i| (i % 241) as u8)
            .collect();
        let mut body = Vec::new();
        encrypt_parallel(&mut &plain[..], &mut body, &key, 2).unwrap();
        let last = body.len() - (100 + SEGMENT_OVERHEAD);
        // Cut points: nothing, inside the last segment's nonce, its tag, at a batch edge, …
        for cut in [
            0,
            1,
            SEGMENT_OVERHEAD - 1,
            last,
            last + 5,
            last + SEGMENT_OVERHEAD - 1,
            body.len() - 1,
            BATCH_LEN,
            BATCH_LEN + 3,
            body.len(),
        ] {
            let body = &body[..cut];
            let mut want = Vec::new();
            let seq = Decryptor::new(body, &keys(), None)
                .unwrap()
                .copy_to(&mut want);
            for threads in [2, 3] {
                let mut got = Vec::new();
                let par = decrypt_parallel(&mut &body[..], &mut got, &keys(), None, threads);
                assert_eq!(
                    format!("{seq:?}"),
                    format!("{par:?}"),
                    "cut {cut} threads {threads}"
                );
                assert!(got == want, "cut {cut} threads {threads}");
            }
        }
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
