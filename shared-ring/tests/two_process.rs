//! Two OS processes share a ring through a mapped file (on tmpfs when `/dev/shm` exists) and
//! pass 10^7 items with a checksum. The child is this test binary itself, re-executed with an
//! environment variable naming the file.
#![allow(
    unsafe_code,
    reason = "mapping shared memory and placing the ring in it"
)]

use std::env;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::MmapMut;
use shared_ring::{PopError, PushError, Ring};

type Item = [u64; 2];
type SharedRing = Ring<Item, 1024>;

const CHILD_ENV: &str = "SHARED_RING_TWO_PROCESS_CHILD";
const COUNT: u64 = 10_000_000;
const TEST_NAME: &str = "two_processes_pass_items_through_shared_memory";
const TIMEOUT: Duration = Duration::from_secs(120);

fn item(seq: u64) -> Item {
    [
        seq,
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ 0x0123_4567_89AB_CDEF,
    ]
}

fn map(file: &File) -> MmapMut {
    // SAFETY: the file is private to this test (a fresh, uniquely named file) and is only
    // accessed through the ring, by this process and the child.
    unsafe { MmapMut::map_mut(file) }.expect("map the shared file")
}

#[test]
fn two_processes_pass_items_through_shared_memory() {
    if let Some(path) = env::var_os(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        env::temp_dir()
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = dir.join(format!("shared-ring-test-{}-{nanos}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.set_len(SharedRing::SIZE as u64).unwrap();
    let mut mapping = map(&file);
    let result = parent(&mut mapping, &path);
    drop(mapping);
    fs::remove_file(&path).unwrap();
    result.unwrap();
}

fn parent(mapping: &mut MmapMut, path: &Path) -> Result<(), String> {
    // SAFETY: the mapping is page-aligned, `SIZE` bytes long, outlives the ring (the ring and
    // its producer are dropped at the end of this function, before the mapping), and is shared
    // only with the child, which attaches and takes the consumer end.
    let ring = unsafe { SharedRing::init_raw(mapping.as_mut_ptr(), mapping.len()) }
        .map_err(|e| e.to_string())?;
    let mut tx = ring.producer().map_err(|e| e.to_string())?;
    let mut child = Command::new(env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut seq = 0u64;
    let mut sum = 0u64;
    let mut spins = 0u32;
    while seq < COUNT {
        // Alternate single items and bursts of up to 32.
        let sent = if seq.is_multiple_of(2) {
            match tx.push_silent(item(seq)) {
                Ok(()) => 1,
                Err(PushError::Full(_)) => 0,
                Err(e) => return Err(e.to_string()),
            }
        } else {
            let mut chunk = tx
                .write_chunk(32.min((COUNT - seq) as usize))
                .map_err(|e| e.to_string())?;
            let mut k = 0;
            while chunk.push(item(seq + k)).is_ok() {
                k += 1;
            }
            chunk.commit_silent();
            k
        };
        for k in 0..sent {
            sum = sum.wrapping_add(item(seq + k)[1]);
        }
        seq += sent;
        if sent == 0 {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    return Err(format!("child exited early: {status}"));
                }
                if started.elapsed() > TIMEOUT {
                    let _ = child.kill();
                    return Err(format!("timed out after {seq} items"));
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("child failed: {}\n{stdout}", output.status));
    }
    // The harness may print the test name on the same line, so search for the marker.
    let reported = stdout
        .split("child checksum=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no checksum from the child:\n{stdout}"))?;
    if reported != sum.to_string() {
        return Err(format!(
            "checksum mismatch: sent {sum}, child received {reported}"
        ));
    }
    eprintln!(
        "{COUNT} items between two processes in {:?}",
        started.elapsed()
    );
    Ok(())
}

fn child(path: &Path) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the shared file");
    let mapping = map(&file);
    // SAFETY: as in the parent: the mapping outlives the ring (both live to the end of this
    // function) and the parent took the producer end.
    let ring = unsafe { SharedRing::attach_raw(mapping.as_ptr(), mapping.len()) }
        .expect("attach to the parent's ring");
    let mut rx = ring.consumer().expect("claim the consumer end");
    let started = Instant::now();
    let mut expected = 0u64;
    let mut sum = 0u64;
    let mut spins = 0u32;
    while expected < COUNT {
        let before = expected;
        if expected.is_multiple_of(3) {
            match rx.pop() {
                Ok(got) => {
                    assert_eq!(got, item(expected), "item out of order or damaged");
                    sum = sum.wrapping_add(got[1]);
                    expected += 1;
                }
                Err(PopError::Empty) => {}
                Err(e) => panic!("{e}"),
            }
        } else {
            let chunk = rx.read_chunk(64).expect("ring not corrupted");
            for got in chunk.iter() {
                assert_eq!(got, item(expected), "item out of order or damaged");
                sum = sum.wrapping_add(got[1]);
                expected += 1;
            }
            chunk.release();
        }
        if expected == before {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
                assert!(
                    started.elapsed() < TIMEOUT,
                    "timed out after {expected} items"
                );
            } else {
                std::hint::spin_loop();
            }
        }
    }
    assert_eq!(rx.pop(), Err(PopError::Empty));
    println!("child checksum={sum}");
}
