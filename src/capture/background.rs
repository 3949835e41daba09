//! Output written on a thread of its own. Writing a kept capture into the page cache (the
//! copy, the pages the kernel allocates) is system time the pass otherwise spends between
//! packets: on a capture that keeps most of its bytes (a flood of unanswered lookups, all
//! evidence) it was an eighth of a `trim`. Handed over in large buffers, it runs on the other
//! core while the pass reads on.
//!
//! At most three buffers exist (one filling, one queued, one being written), so memory stays
//! bounded however slow the output is; a slow output slows the pass, as it did before. The
//! first write error stops the thread, and the next hand-over (or `finish`) returns it.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

type Sink = Box<dyn Write + Send>;

enum Job {
    Write(Vec<u8>),
    /// Write everything handed over so far through to the sink and say how it went.
    Flush,
}

pub struct Background {
    buf: Vec<u8>,
    capacity: usize,
    jobs: Option<SyncSender<Job>>,
    /// Buffers the thread wrote, back for reuse, and the answers to `Job::Flush`.
    done: Receiver<Done>,
    thread: Option<JoinHandle<(Sink, io::Result<()>)>>,
}

enum Done {
    Buffer(Vec<u8>),
    Flushed(io::Result<()>),
}

impl Background {
    pub fn new(sink: Sink, capacity: usize) -> Background {
        // One job queued while one is written: the pass fills the third buffer meanwhile.
        let (jobs, queue) = sync_channel::<Job>(1);
        let (give_back, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("output".into())
            .spawn(move || write_jobs(sink, &queue, &give_back))
            .expect("spawning the output thread");
        Background { buf: Vec::with_capacity(capacity), capacity, jobs: Some(jobs), done, thread: Some(thread) }
    }

    /// Hands the filled buffer to the thread and takes a free one (a new one while fewer than
    /// three exist).
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = None;
        while let Ok(done) = self.done.try_recv() {
            if let Done::Buffer(b) = done {
                next = Some(b);
            }
        }
        let next = next.unwrap_or_else(|| Vec::with_capacity(self.capacity));
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Job::Write(full))
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        if sent { Ok(()) } else { Err(self.closed()) }
    }

    /// The thread is gone: why (its write error, if it stopped on one).
    fn closed(&mut self) -> io::Error {
        self.stop().1.err().unwrap_or_else(|| io::Error::other("output closed"))
    }

    /// Ends the thread once it has written what it was given; its sink and how the writing went.
    fn stop(&mut self) -> (Option<Sink>, io::Result<()>) {
        self.jobs = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok((sink, r))) => (Some(sink), r),
            Some(Err(_)) => (None, Err(io::Error::other("the output thread panicked"))),
            None => (None, Err(io::Error::other("output closed"))),
        }
    }

    /// Writes out everything and gives the sink back (to be linked into place, or dropped).
    pub fn finish(mut self) -> io::Result<Sink> {
        self.hand_over()?;
        let (sink, r) = self.stop();
        r?;
        sink.ok_or_else(|| io::Error::other("output closed"))
    }
}

fn write_jobs(
    mut sink: Sink,
    queue: &Receiver<Job>,
    give_back: &std::sync::mpsc::Sender<Done>,
) -> (Sink, io::Result<()>) {
    for job in queue {
        match job {
            Job::Write(mut b) => {
                if let Err(e) = sink.write_all(&b) {
                    return (sink, Err(e));
                }
                b.clear();
                let _ = give_back.send(Done::Buffer(b));
            }
            Job::Flush => {
                let r = sink.flush();
                let failed = r.is_err();
                let _ = give_back.send(Done::Flushed(r));
                if failed {
                    return (sink, Err(io::Error::other("flush failed")));
                }
            }
        }
    }
    let r = sink.flush();
    (sink, r)
}

impl Write for Background {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while self.buf.len() + data.len() >= self.capacity {
            let room = self.capacity - self.buf.len();
            self.buf.extend_from_slice(&data[..room]);
            data = &data[room..];
            self.hand_over()?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()?;
        self.send(Job::Flush)?;
        loop {
            match self.done.recv() {
                Ok(Done::Flushed(r)) => return r,
                Ok(Done::Buffer(_)) => {}
                Err(_) => return Err(self.closed()),
            }
        }
    }
}

impl Drop for Background {
    /// Waits for the thread, so that nothing is written after the output is given up (a
    /// temporary file is removed only once no write to it can follow).
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every byte arrives, in order, whatever the sizes of the writes against the buffer's.
    #[test]
    fn writes_arrive_whole_and_in_order() {
        let out = Shared::default();
        let mut w = Background::new(Box::new(out.clone()), 64);
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let chunk: Vec<u8> = (0..(i * 7) % 150).map(|k| (i + k) as u8).collect();
            w.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            if i % 500 == 0 {
                w.flush().unwrap();
                assert_eq!(out.0.lock().unwrap().len(), expected.len(), "flushed through at {i}");
            }
        }
        drop(w.finish().unwrap());
        assert_eq!(*out.0.lock().unwrap(), expected);
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A write error on the thread comes back to the writer, not lost.
    #[test]
    fn a_write_error_comes_back() {
        let mut w = Background::new(Box::new(Full), 16);
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = w.write_all(&[1; 10]) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a write failed");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
        let mut w = Background::new(Box::new(Full), 1 << 20);
        w.write_all(b"short").unwrap();
        assert_eq!(w.finish().err().map(|e| e.kind()), Some(io::ErrorKind::StorageFull));
    }
}
