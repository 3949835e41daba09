//! Input read on a thread of its own. Reading a file from the page cache is the kernel's copy
//! page by page, with a lookup of each page: on a capture that is mostly kept bulk, a quarter
//! to a third of a `flows` or `diagnose` went there, on the one core the pass runs on. Read in
//! 1 MiB blocks on the other core (and decompressed there, for gzip), a block costs the pass a
//! plain copy.
//!
//! At most four blocks exist (one being read, two waiting, one being consumed), so memory
//! stays bounded however far ahead the thread could read. A read error is handed over in its
//! place in the stream, after the bytes before it.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

const BLOCK_BYTES: usize = 1 << 20;

pub struct ReadAhead {
    blocks: Receiver<io::Result<Vec<u8>>>,
    /// Consumed blocks, back to the thread to be filled again.
    give_back: Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl ReadAhead {
    pub fn new(mut src: Box<dyn Read + Send>) -> ReadAhead {
        let (send, blocks) = sync_channel::<io::Result<Vec<u8>>>(2);
        let (give_back, returned) = channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || read_blocks(&mut *src, &send, &returned))
            .expect("spawning the input thread");
        ReadAhead { blocks, give_back, current: Vec::new(), at: 0, ended: false }
    }
}

/// Fills blocks until the input ends, fails, or nobody reads any more (the receiver is gone).
fn read_blocks(src: &mut dyn Read, send: &SyncSender<io::Result<Vec<u8>>>, returned: &Receiver<Vec<u8>>) {
    loop {
        let mut block = returned.try_recv().unwrap_or_default();
        block.resize(BLOCK_BYTES, 0);
        let mut n = 0;
        let failed = loop {
            if n == block.len() {
                break None;
            }
            match src.read(&mut block[n..]) {
                Ok(0) => break None,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        block.truncate(n);
        if n > 0 && send.send(Ok(block)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = send.send(Err(e));
            return;
        }
        if n < BLOCK_BYTES {
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.blocks.recv() {
                Ok(Ok(block)) => {
                    let used = std::mem::replace(&mut self.current, block);
                    self.at = 0;
                    if used.capacity() > 0 {
                        let _ = self.give_back.send(used);
                    }
                }
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(_) => self.ended = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte arrives in order, whatever the sizes of the reads against the blocks'.
    #[test]
    fn bytes_arrive_whole_and_in_order() {
        let data: Vec<u8> = (0..5 * BLOCK_BYTES / 2 + 17).map(|i| (i * 7 + i / 300) as u8).collect();
        let mut r = ReadAhead::new(Box::new(io::Cursor::new(data.clone())));
        let mut got = Vec::new();
        let mut sizes = [1usize, 7, 4096, 65_536, 1 << 20, 3 << 20].iter().cycle();
        loop {
            let mut buf = vec![0; *sizes.next().unwrap()];
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        assert_eq!(r.read(&mut [0; 8]).unwrap(), 0, "stays at its end");
    }

    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    /// A read error comes after the bytes read before it, not instead of them.
    #[test]
    fn an_error_comes_in_its_place() {
        let mut r = ReadAhead::new(Box::new(FailsAfter(BLOCK_BYTES + 5)));
        let mut got = 0;
        let e = loop {
            let mut buf = vec![0; 70_000];
            match r.read(&mut buf) {
                Ok(0) => panic!("ended without the error"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(got, BLOCK_BYTES + 5);
        assert_eq!(e.to_string(), "disk gone");
    }
}
