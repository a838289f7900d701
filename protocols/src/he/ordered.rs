//! Parallel work whose results are used in order as soon as they are ready: the HE
//! server sends each group of results while the others are still being computed, so the
//! download overlaps the computation on a slow link.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::error::Result;

/// Runs `work(i, item)` for every item on up to `threads` scoped threads, items taken in
/// index order, and calls `emit(i, output)` on the calling thread in index order, each
/// as soon as it and every earlier output are ready. The first error (of `work` or
/// `emit`, in index order) stops the run: no later item is started, later outputs are
/// dropped, and it is returned.
///
/// The outputs are emitted in the same order whatever the scheduling, so a caller that
/// draws its randomness per item beforehand sends the same bytes every run.
pub(super) fn for_each_ordered<I, O>(
    items: Vec<I>,
    threads: usize,
    work: impl Fn(usize, I) -> Result<O> + Sync,
    mut emit: impl FnMut(usize, O) -> Result<()>,
) -> Result<()>
where
    I: Send,
    O: Send,
{
    let threads = threads.clamp(1, items.len().max(1));
    let queue = Mutex::new(items.into_iter().enumerate());
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<O>)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (queue, stop, work) = (&queue, &stop, &work);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A poisoned queue (a worker panicked) ends this worker too; the
                    // scope then re-raises the panic.
                    let Some((i, item)) = queue.lock().ok().and_then(|mut q| q.next()) else {
                        break;
                    };
                    if tx.send((i, work(i, item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut next = 0;
        for (i, out) in rx {
            pending.insert(i, out);
            while let Some(out) = pending.remove(&next) {
                if let Err(e) = out.and_then(|o| emit(next, o)) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                next += 1;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::ProtocolError;

    #[test]
    fn outputs_come_in_order_whatever_the_finishing_order() {
        for threads in [1, 2, 3, 8] {
            let items: Vec<u64> = (0..40).collect();
            let mut seen = Vec::new();
            for_each_ordered(
                items,
                threads,
                |i, x| {
                    // Early items take longest, so later ones finish first.
                    std::thread::sleep(std::time::Duration::from_micros(((40 - i) * 50) as u64));
                    Ok(x * x)
                },
                |i, y| {
                    seen.push((i, y));
                    Ok(())
                },
            )
            .unwrap();
            let want: Vec<(usize, u64)> = (0..40).map(|i| (i, (i * i) as u64)).collect();
            assert_eq!(seen, want, "{threads} threads");
        }
        // No items: nothing emitted, no error.
        for_each_ordered(Vec::<u8>::new(), 2, |_, x| Ok(x), |_, _| panic!("emitted")).unwrap();
    }

    #[test]
    fn the_first_error_in_order_stops_the_run() {
        let mut seen = Vec::new();
        let e = for_each_ordered(
            (0..100).collect::<Vec<u32>>(),
            2,
            |i, x| {
                if i == 7 {
                    Err(ProtocolError::peer("item 7"))
                } else {
                    Ok(x)
                }
            },
            |i, _| {
                seen.push(i);
                Ok(())
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("item 7"), "{e}");
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        // An error of `emit` stops it too.
        let mut n = 0;
        let e = for_each_ordered(
            (0..100).collect::<Vec<u32>>(),
            2,
            |_, x| Ok(x),
            |i, _| {
                n += 1;
                if i == 3 {
                    Err(ProtocolError::arg("emit 3"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("emit 3"), "{e}");
        assert_eq!(n, 4);
    }
}
